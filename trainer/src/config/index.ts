// The trainer configuration: what every `iacnas trainer <phase>` reads. The same
// sections make up the search definition of IACSearch.spec (operator/src/api), so a
// field added here appears in the CRD after `npm run gen:crds`.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { DatasetConfig } from './dataset.ts';
import { BackboneConfig, SearchConfig } from './search.ts';
import { EvaluateConfig, RetrainConfig } from './train.ts';

export * from './dataset.ts';
export * from './search.ts';
export * from './train.ts';

export const TrainerConfig = z.object({
  name: z.string().default('search').describe('Name of the search (used in reports).'),
  seed: z.int().min(0).default(0).describe('Seed of weight initialisation, batch order and augmentation.'),
  dataset: DatasetConfig.prefault({}),
  backbone: BackboneConfig.prefault({}),
  search: SearchConfig.prefault({}),
  retrain: RetrainConfig.prefault({}),
  evaluate: EvaluateConfig.prefault({}),
});
export type TrainerConfig = z.infer<typeof TrainerConfig>;
export type TrainerConfigInput = z.input<typeof TrainerConfig>;

/** A configuration problem, with the path of the offending field. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Formats zod issues as "field.path: message" lines. */
export function formatIssues(error: z.ZodError, prefix = ''): string {
  return error.issues
    .map((i) => {
      const field = [prefix, ...i.path.map(String)].filter(Boolean).join('.');
      return `${field || '(root)'}: ${i.message}`;
    })
    .join('\n');
}

/** Validates a parsed configuration object; throws ConfigError naming every bad field. */
export function parseTrainerConfig(input: unknown): TrainerConfig {
  const result = TrainerConfig.safeParse(input ?? {});
  if (!result.success) throw new ConfigError(`invalid trainer configuration:\n${formatIssues(result.error)}`);
  const { split } = result.data.dataset;
  const sum = split.train + split.val + split.test;
  if (Math.abs(sum - 1) > 1e-6) {
    throw new ConfigError(`invalid trainer configuration:\ndataset.split: train + val + test must be 1, got ${sum}`);
  }
  if (result.data.dataset.format !== 'phantom' && !result.data.dataset.path) {
    throw new ConfigError(
      `invalid trainer configuration:\ndataset.path: required for format '${result.data.dataset.format}' (the directory holding dataset.json)`,
    );
  }
  return result.data;
}

/** Reads a configuration from a JSON or YAML file, or from an inline JSON string. */
export function loadTrainerConfig(opts: { file?: string; json?: string }): TrainerConfig {
  let raw: unknown;
  if (opts.json !== undefined) {
    try {
      raw = JSON.parse(opts.json);
    } catch (e) {
      throw new ConfigError(`--config-json is not valid JSON: ${(e as Error).message}`);
    }
  } else if (opts.file !== undefined) {
    let text: string;
    try {
      text = readFileSync(opts.file, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read config file ${opts.file}: ${(e as Error).message}`);
    }
    try {
      raw = parseYaml(text); // YAML is a superset of JSON
    } catch (e) {
      throw new ConfigError(`config file ${opts.file} is not valid YAML/JSON: ${(e as Error).message}`);
    }
  } else {
    raw = {};
  }
  return parseTrainerConfig(raw);
}
