// The trainer configuration: what every `iacnas trainer <phase>` reads. The same
// sections make up the search definition of IACSearch.spec (operator/src/api), so a
// field added here appears in the CRD after `npm run gen:crds`.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { type BadInputIssue, BadInputError, issueLine } from '../../../contract/src/index.ts';
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

/** A configuration problem: `issues` name the offending fields. */
export class ConfigError extends BadInputError {
  override name = 'ConfigError';
  constructor(message: string, issues?: readonly BadInputIssue[]) {
    super('config', message, issues);
  }
}

// ---------------------------------------------------------------------------
// Unknown keys. The schemas strip keys they do not know, so a misspelt field would
// silently fall back to its default: every key of the input is checked against the
// schema first, at every level, and each unknown one is named with its path and the
// nearest known key.

interface ZodDefLike {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  element?: z.ZodType;
  valueType?: z.ZodType;
  catchall?: z.ZodType;
  getter?: () => z.ZodType;
}

function defOf(schema: z.ZodType): ZodDefLike {
  return (schema as unknown as { _zod: { def: ZodDefLike } })._zod.def;
}

/** The schema under optional/default/prefault/nullable/readonly/catch/pipe/lazy wrappers. */
function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema;
  for (let i = 0; i < 32; i++) {
    const d = defOf(s);
    if (d.innerType && ['optional', 'nullable', 'default', 'prefault', 'nonoptional', 'readonly', 'catch'].includes(d.type)) s = d.innerType;
    else if (d.type === 'pipe' && d.in) s = d.in;
    else if (d.type === 'lazy' && d.getter) s = d.getter();
    else break;
  }
  return s;
}

/** The keys an object schema knows; undefined when `schema` is no object or takes any key (a catchall). */
export function knownKeys(schema: z.ZodType): string[] | undefined {
  const d = defOf(unwrap(schema));
  if (d.type !== 'object' || !d.shape) return undefined;
  if (d.catchall && defOf(d.catchall).type !== 'never') return undefined;
  return Object.keys(d.shape);
}

const normalised = (s: string) => s.toLowerCase().replace(/[-_\s]/g, '');

/** Edits (insert, delete, substitute, swap two neighbours) that turn `a` into `b`. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The known key a misspelt `key` most likely meant, if one is close enough. */
export function nearestKey(key: string, known: readonly string[]): string | undefined {
  const k = normalised(key);
  if (!k) return undefined;
  let best: { key: string; score: number } | undefined;
  for (const candidate of known) {
    const c = normalised(candidate);
    // Same letters but for case, '-' and '_' (batch_size -> batchSize): the best there is.
    let score = c === k ? 0 : editDistance(k, c);
    // A part of the key (epochs -> maxEpochs) counts as one edit.
    if (score > 1 && k.length >= 4 && (c.includes(k) || k.includes(c))) score = 1;
    if (score <= Math.max(1, Math.floor(Math.max(k.length, c.length) / 4)) && (!best || score < best.score)) best = { key: candidate, score };
  }
  return best?.key;
}

export interface UnknownKey {
  /** Dotted path of the unknown key, array items by index ("evaluate.external.0.pvc"). */
  path: string;
  key: string;
  /** The nearest known key, when one is close enough. */
  suggestion?: string;
  /** Every key the enclosing object knows. */
  known: string[];
}

/** Every key of `input` that `schema` does not know, at every level (objects, arrays, records). */
export function unknownKeys(schema: z.ZodType, input: unknown, prefix: readonly string[] = []): UnknownKey[] {
  const out: UnknownKey[] = [];
  const walk = (s: z.ZodType, value: unknown, path: readonly string[]) => {
    if (value === null || typeof value !== 'object') return;
    const inner = unwrap(s);
    const d = defOf(inner);
    if (Array.isArray(value)) {
      if (d.type === 'array' && d.element) {
        for (const [i, item] of value.entries()) walk(d.element, item, [...path, String(i)]);
      }
      return;
    }
    if (d.type === 'record' && d.valueType) {
      for (const [k, v] of Object.entries(value)) walk(d.valueType, v, [...path, k]);
      return;
    }
    const known = knownKeys(inner);
    if (!known || !d.shape) return;
    for (const [k, v] of Object.entries(value)) {
      if (Object.hasOwn(d.shape, k)) walk(d.shape[k], v, [...path, k]);
      else out.push({ path: [...path, k].join('.'), key: k, suggestion: nearestKey(k, known), known });
    }
  };
  walk(schema, input, prefix);
  return out;
}

/** search.maxEpoch: "unknown key; did you mean maxEpochs?" */
export function unknownKeyIssue(u: UnknownKey): BadInputIssue {
  return { path: u.path, message: u.suggestion ? `unknown key; did you mean ${u.suggestion}?` : `unknown key; the keys here are ${u.known.join(', ')}` };
}

/** "search.maxEpoch: unknown key; did you mean maxEpochs?" */
export function unknownKeyLine(u: UnknownKey): string {
  return issueLine(unknownKeyIssue(u));
}

/** The schema of the field at `path` under `schema`, when the path leads through objects, arrays and records. */
function schemaAt(schema: z.ZodType, path: readonly PropertyKey[]): z.ZodType | undefined {
  let s: z.ZodType | undefined = schema;
  for (const p of path) {
    if (!s) return undefined;
    const d = defOf(unwrap(s));
    if (d.type === 'object' && d.shape) s = d.shape[String(p)];
    else if (d.type === 'array') s = d.element;
    else if (d.type === 'record') s = d.valueType;
    else return undefined;
  }
  return s;
}

/**
 * Formats zod issues as "field.path: message" lines. An unrecognised-keys issue (from a
 * strict object) becomes one line per key; with `schema` (the schema that was parsed)
 * each also names the nearest known key.
 */
export function formatIssues(error: z.ZodError, prefix = '', schema?: z.ZodType): string {
  return zodIssues(error, prefix, schema).map(issueLine).join('\n');
}

/** The issues of a zod error, each with its dotted field path (under `prefix`); see formatIssues. */
export function zodIssues(error: z.ZodError, prefix = '', schema?: z.ZodType): BadInputIssue[] {
  return error.issues.flatMap((i): BadInputIssue[] => {
    const field = [prefix, ...i.path.map(String)].filter(Boolean).join('.');
    if (i.code === 'unrecognized_keys') {
      const at = schema ? schemaAt(schema, i.path) : undefined;
      const known = at ? knownKeys(at) : undefined;
      return i.keys.map((key) => {
        const path = [field, key].filter(Boolean).join('.');
        return known ? unknownKeyIssue({ path, key, suggestion: nearestKey(key, known), known }) : { path, message: 'unknown key' };
      });
    }
    return [{ path: field || '(root)', message: i.message }];
  });
}

// ---------------------------------------------------------------------------
// IACSearch manifests. `iacnas trainer <phase> --config search.yaml` with the YAML a user
// applies to a cluster (or runs with `iacnas run`) is read as its spec: the trainer
// sections of the spec are the trainer configuration, metadata.name its name. What only
// says how a cluster runs the search is left to the operator, and said so on stderr.

/** The API group of IACSearch (operator/src/api, which the trainer does not import). */
const IACSEARCH_GROUP = 'nas.iac.dev';
const IACSEARCH_VERSION = `${IACSEARCH_GROUP}/v1alpha1`;
/** Fields of IACSearch.spec that say how a cluster runs the search; the trainer has no use for them. */
export const CLUSTER_SPEC_FIELDS = [
  'resources',
  'image',
  'artifacts',
  'cost',
  'budget',
  'suspend',
  'backoffLimit',
  'activeDeadlineSeconds',
  'ttlSecondsAfterFinished',
] as const;
const MANIFEST_KEYS = ['apiVersion', 'kind', 'metadata', 'spec', 'status'];

/** Whether `raw` looks like a Kubernetes object rather than a trainer configuration. */
function isManifest(raw: unknown): raw is Record<string, unknown> {
  return typeof raw === 'object' && raw !== null && !Array.isArray(raw) && ('apiVersion' in raw || 'kind' in raw);
}

export interface ConfigInput {
  /** The trainer configuration as given (before defaults). */
  input: unknown;
  /** 'spec' when it came from an IACSearch manifest: every field is named as spec.<field>. */
  prefix: string;
  /** What was left out and why (for stderr). */
  notes: string[];
}

function bad(issues: BadInputIssue[]): ConfigError {
  return new ConfigError(['invalid trainer configuration:', ...issues.map(issueLine)].join('\n'), issues);
}

/**
 * The trainer configuration in `raw`: itself, or the spec of an IACSearch manifest (its
 * trainer sections, metadata.name as name; the cluster's fields and claims left out).
 */
export function trainerConfigFrom(raw: unknown): ConfigInput {
  if (!isManifest(raw)) return { input: raw ?? {}, prefix: '', notes: [] };
  const m = raw;
  if (m.kind !== 'IACSearch' || typeof m.apiVersion !== 'string' || !m.apiVersion.startsWith(`${IACSEARCH_GROUP}/`)) {
    throw bad([
      {
        path: '(root)',
        message: `a Kubernetes object of kind ${JSON.stringify(m.kind)} (apiVersion ${JSON.stringify(m.apiVersion)}), not a trainer configuration; give the trainer configuration (dataset, backbone, search, retrain, evaluate) or an IACSearch (apiVersion ${IACSEARCH_VERSION}, kind IACSearch)`,
      },
    ]);
  }
  if (m.apiVersion !== IACSEARCH_VERSION) throw bad([{ path: 'apiVersion', message: `${m.apiVersion} is not served; use ${IACSEARCH_VERSION}` }]);
  const problems = Object.keys(m)
    .filter((k) => !MANIFEST_KEYS.includes(k))
    .map((k) => unknownKeyIssue({ path: k, key: k, suggestion: nearestKey(k, MANIFEST_KEYS), known: MANIFEST_KEYS }));
  if (typeof m.spec !== 'object' || m.spec === null || Array.isArray(m.spec)) {
    problems.push({ path: 'spec', message: 'required: an IACSearch manifest is read as its spec (give spec: {} to ask for the defaults)' });
  }
  if (problems.length) throw bad(problems);
  const spec = { ...(m.spec as Record<string, unknown>) };
  const notes: string[] = [];
  const cluster = CLUSTER_SPEC_FIELDS.filter((k) => k in spec);
  for (const k of cluster) delete spec[k];
  if (cluster.length) notes.push(`config: an IACSearch manifest; spec.${cluster.join(', spec.')} only say how a cluster runs it and are not used here`);
  const stripClaim = (item: unknown, where: string): unknown => {
    if (typeof item !== 'object' || item === null || Array.isArray(item) || !('pvc' in item)) return item;
    const { pvc: _pvc, ...rest } = item as Record<string, unknown>;
    const path = typeof rest.path === 'string' ? ` (${rest.path})` : '';
    notes.push(`config: ${where}.pvc is a cluster claim and is not used here: ${where}.path${path} is read as a path on this machine`);
    return rest;
  };
  spec.dataset = stripClaim(spec.dataset, 'spec.dataset');
  const evaluate = spec.evaluate;
  if (typeof evaluate === 'object' && evaluate !== null && !Array.isArray(evaluate) && Array.isArray((evaluate as { external?: unknown }).external)) {
    const external = (evaluate as { external: unknown[] }).external.map((item, i) => stripClaim(item, `spec.evaluate.external.${i}`));
    spec.evaluate = { ...evaluate, external };
  }
  const metadata = m.metadata as { name?: unknown } | undefined;
  const input = typeof metadata?.name === 'string' && !('name' in spec) ? { name: metadata.name, ...spec } : spec;
  return { input, prefix: 'spec', notes };
}

/**
 * Validates a configuration object; throws ConfigError naming every bad field: unknown
 * keys (with the nearest known key), values out of range and the cross-field rules. An
 * IACSearch manifest is read as its spec (trainerConfigFrom).
 */
export function parseTrainerConfig(raw: unknown, opts: { log?: (line: string) => void } = {}): TrainerConfig {
  const { input, prefix, notes } = trainerConfigFrom(raw);
  for (const n of notes) opts.log?.(n);
  const at = (field: string) => [prefix, field].filter(Boolean).join('.');
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw bad([
      {
        path: prefix || '(root)',
        message: `expected an object with the sections dataset, backbone, search, retrain, evaluate; got ${Array.isArray(input) ? 'an array' : typeof input}`,
      },
    ]);
  }
  const unknown = unknownKeys(TrainerConfig, input, prefix ? [prefix] : []).map(unknownKeyIssue);
  const result = TrainerConfig.safeParse(input);
  if (!result.success) throw bad([...unknown, ...zodIssues(result.error, prefix, TrainerConfig)]);
  if (unknown.length) throw bad(unknown);
  const { split } = result.data.dataset;
  const sum = split.train + split.val + split.test;
  if (Math.abs(sum - 1) > 1e-6) throw bad([{ path: at('dataset.split'), message: `train + val + test must be 1, got ${sum}` }]);
  if (result.data.dataset.format !== 'phantom' && !result.data.dataset.path) {
    throw bad([{ path: at('dataset.path'), message: `required for format '${result.data.dataset.format}' (the directory holding dataset.json)` }]);
  }
  return result.data;
}

/**
 * Reads a configuration from a JSON or YAML file, or from an inline JSON string: a
 * trainer configuration or an IACSearch manifest. `log` gets a line for each part of a
 * manifest that is left out.
 */
export function loadTrainerConfig(opts: { file?: string; json?: string; log?: (line: string) => void }): TrainerConfig {
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
    // An empty file is no configuration: the defaults are asked for with {} (or --config-json '{}').
    if (raw === null || raw === undefined)
      throw new ConfigError(`config file ${opts.file} is empty; write the configuration into it, or give {} for the built-in defaults`);
  } else {
    throw new ConfigError("no configuration: give --config <file> or --config-json <json> (--config-json '{}' for the built-in defaults)");
  }
  return parseTrainerConfig(raw, { log: opts.log });
}
