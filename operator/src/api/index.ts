// The IACSearch API (nas.iac.dev/v1alpha1): schemas, names, and the one validation
// every reader of an IACSearch goes through (operator, `iacnas run`, the CRD generator).
import { z } from 'zod';
import { isBadInput, issueLine } from '../../../contract/src/index.ts';
import { formatIssues, parseTrainerConfig, type TrainerConfig, unknownKeyLine, unknownKeys } from '../../../trainer/src/config/index.ts';
import { validateForTraining } from '../../../trainer/src/config/validate.ts';
import { IACSearchSpec } from './spec.ts';
import { IACSearchStatus } from './status.ts';

export * from './spec.ts';
export * from './status.ts';
export * from './lenient.ts';
export * from './set.ts';

export const GROUP = 'nas.iac.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = 'IACSearch';
export const LIST_KIND = 'IACSearchList';
export const PLURAL = 'iacsearches';
export const SINGULAR = 'iacsearch';
export const SHORT_NAMES = ['iacs'];
export const CATEGORIES = ['nas'];

export { LABEL_ATTEMPT, LABEL_PHASE, LABEL_SEARCH } from '../../../contract/src/index.ts';

/**
 * Longest search name the operator can run: the name is the value of the iac.dev/search
 * label on every child (label values have at most 63 characters), so a longer one could
 * never get its progress Secret, claim or pods. The CRD refuses longer names too.
 */
export const MAX_NAME_LENGTH = 63;

export const IACSearchMetadata = z.object({
  name: z
    .string()
    .min(1)
    .max(
      MAX_NAME_LENGTH,
      `at most ${MAX_NAME_LENGTH} characters: the name is the iac.dev/search label value of every pod, Secret and claim of the search; create it again with a shorter name`,
    ),
  namespace: z.string().optional(),
  uid: z.string().optional(),
  generation: z.int().optional(),
  creationTimestamp: z.string().optional(),
  deletionTimestamp: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
});

export const IACSearch = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal(KIND),
  metadata: IACSearchMetadata.loose(),
  // Required: a search whose spec was lost (a typo in the key, wrong indentation) must not
  // start a full-length default GPU search. `spec: {}` asks for the defaults explicitly.
  spec: IACSearchSpec,
  status: IACSearchStatus.optional(),
});
export type IACSearch = z.infer<typeof IACSearch>;
export type IACSearchInput = z.input<typeof IACSearch>;

export type ParseResult = { ok: true; search: IACSearch; trainerConfig: TrainerConfig } | { ok: false; message: string; fields: string[] };

/**
 * Validates an IACSearch as read (from the API server or a YAML file) with the same
 * schemas the CRD is generated from, plus the trainer's own cross-field checks.
 * Never throws: a bad object yields a message naming every bad field and its fix.
 */
/**
 * Parses and checks an IACSearch. `unknownFields: 'refuse'` (for files, as `iacnas run`
 * reads them) refuses keys the spec does not know; objects from the API server are read
 * as they come (it prunes unknown fields itself, and a CRD newer than the operator may
 * carry fields this version does not know yet).
 */
export function parseIACSearch(obj: unknown, opts: { unknownFields?: 'refuse' | 'ignore' } = {}): ParseResult {
  // The status is the operator's own record, not the user's input: a damaged one never
  // makes the spec invalid (reconcile reads it field by field).
  const { status, ...rest } = typeof obj === 'object' && obj !== null ? (obj as Record<string, unknown>) : { status: undefined };
  const readable = IACSearchStatus.safeParse(status);
  const result = IACSearch.safeParse(
    typeof obj === 'object' && obj !== null ? { ...rest, ...(readable.success && readable.data && { status: readable.data }) } : obj,
  );
  // zod drops keys it does not know: in a file, a misspelt field would silently mean its default.
  const unknown = (opts.unknownFields === 'refuse' ? unknownKeys(IACSearchSpec, (obj as { spec?: unknown } | null)?.spec, ['spec']) : []).map((u) => ({
    line: bracketIndexes(unknownKeyLine(u)),
    field: bracketIndexes(u.path),
  }));
  if (!result.success) {
    const message = formatIssues(result.error)
      .split('\n')
      .map((line) =>
        /^spec: Invalid input: expected object/.test(line)
          ? 'spec: required: without one the operator would run a full-length default search; give spec: {} to ask for the defaults'
          : bracketIndexes(line),
      )
      .join('\n');
    return {
      ok: false,
      message: [...unknown.map((u) => u.line), message].join('\n'),
      fields: [...unknown.map((u) => u.field), ...result.error.issues.map((i) => bracketIndexes(i.path.map(String).join('.')) || '(root)')],
    };
  }
  if (unknown.length > 0) return { ok: false, message: unknown.map((u) => u.line).join('\n'), fields: unknown.map((u) => u.field) };
  const search = result.data;
  try {
    const trainerConfig = parseTrainerConfig(trainerConfigInput(search));
    // The checks the trainer makes before it trains (warmupEpochs below maxEpochs, slices a
    // multiple of 2^depth, ...): found here they cost no pod and no GPU.
    validateForTraining(trainerConfig, 'search');
    validateForTraining(trainerConfig, 'retrain');
    return { ok: true, search, trainerConfig };
  } catch (e) {
    if (!isBadInput(e)) throw e;
    // The trainer names fields relative to its configuration; the user edits spec.
    const issues = e.issues.map((i) => ({ ...i, path: i.path === undefined ? undefined : bracketIndexes(`spec.${i.path}`) }));
    return { ok: false, message: issues.map(issueLine).join('\n'), fields: issues.flatMap((i) => (i.path === undefined ? [] : [i.path])) };
  }
}

/**
 * The trainer configuration of a search: what every phase pod gets as --config-json. The
 * claims (dataset.pvc, evaluate.external[].pvc) are the operator's: left out, with the
 * paths as the pod sees them when given (datasetPath, externalPaths in the order of
 * spec.evaluate.external).
 */
export function trainerConfigInput(search: IACSearch, datasetPath?: string, externalPaths?: readonly string[]): Record<string, unknown> {
  const { spec } = search;
  const { pvc: _pvc, ...dataset } = spec.dataset;
  const external = spec.evaluate.external.map(({ pvc: _claim, ...item }, i) => (externalPaths?.[i] === undefined ? item : { ...item, path: externalPaths[i] }));
  return {
    name: search.metadata.name,
    seed: spec.seed,
    dataset: datasetPath === undefined ? dataset : { ...dataset, path: datasetPath },
    backbone: spec.backbone,
    search: spec.search,
    retrain: spec.retrain,
    evaluate: { ...spec.evaluate, external },
  };
}

/** "spec.evaluate.external.1.name: ..." -> "spec.evaluate.external[1].name: ...": array items as a user writes them. */
export function bracketIndexes(line: string): string {
  const colon = line.indexOf(': ');
  const field = colon < 0 ? line : line.slice(0, colon);
  if (/\s/.test(field)) return line;
  return field.replace(/\.(\d+)(?=\.|$)/g, '[$1]') + (colon < 0 ? '' : line.slice(colon));
}
