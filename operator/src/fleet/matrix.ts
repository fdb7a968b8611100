// The children a set asks for: the product of its matrix's axes, each combination the
// template with the combination's items deep-merged onto it, and a stable name per
// combination (docs/fleets.md). Works on the spec as the user wrote it, not on the parsed
// one with its defaults, so a child's spec holds what the user gave and the API server
// fills in the rest, as for any IACSearch applied by hand.
import { createHash } from 'node:crypto';
import { MAX_NAME_LENGTH } from '../api/index.ts';

type Json = Record<string, unknown>;

/** One combination of the matrix: the items of each axis given. */
export interface Combination {
  dataset?: { name: string; fields: Json };
  seed?: number;
  search?: { name: string; fields: Json };
}

/** What a child records of its combination (annotation COMBINATION_ANNOTATION). */
export interface CombinationLabel {
  dataset?: string;
  seed?: number;
  search?: string;
}

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `over` merged onto `base`: objects merge key by key, anything else (arrays included) replaces. */
export function deepMerge(base: Json, over: Json): Json {
  const out: Json = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    const b = out[k];
    out[k] = isObject(v) && isObject(b) ? deepMerge(b, v) : structuredClone(v);
  }
  return out;
}

function items(raw: unknown): Array<{ name: string; fields: Json }> | undefined {
  if (!Array.isArray(raw)) return undefined;
  return raw.filter(isObject).map(({ name, ...fields }) => ({ name: String(name), fields }));
}

/** The number of children a matrix asks for (the product of the lengths of the axes given). */
export function combinationCount(matrix: Json | undefined): number {
  let n = 1;
  for (const axis of ['datasets', 'seeds', 'search']) {
    const a = matrix?.[axis];
    if (Array.isArray(a)) n *= a.length;
  }
  return n;
}

/** Every combination, in matrix order: datasets outermost, then seeds, then search variants. */
export function combinations(matrix: Json | undefined): Combination[] {
  const datasets = items(matrix?.datasets);
  const seeds = Array.isArray(matrix?.seeds) ? (matrix.seeds as number[]) : undefined;
  const search = items(matrix?.search);
  const out: Combination[] = [];
  for (const dataset of datasets ?? [undefined]) {
    for (const seed of seeds ?? [undefined]) {
      for (const variant of search ?? [undefined]) {
        const c: Combination = {};
        if (dataset) c.dataset = dataset;
        if (seed !== undefined) c.seed = seed;
        if (variant) c.search = variant;
        out.push(c);
      }
    }
  }
  return out;
}

export function combinationLabel(c: Combination): CombinationLabel {
  const label: CombinationLabel = {};
  if (c.dataset) label.dataset = c.dataset.name;
  if (c.seed !== undefined) label.seed = c.seed;
  if (c.search) label.search = c.search.name;
  return label;
}

/** The readable key of a combination: `<dataset>-s<seed>-<search>` of the axes given; `base` for none. */
export function combinationKey(c: Combination): string {
  const parts: string[] = [];
  if (c.dataset) parts.push(c.dataset.name);
  if (c.seed !== undefined) parts.push(`s${c.seed}`);
  if (c.search) parts.push(c.search.name);
  return parts.length ? parts.join('-') : 'base';
}

/** Eight hex digits of the SHA-256 of a value's JSON (objects with sorted keys). */
export function shortHash(value: unknown): string {
  return createHash('sha256').update(canonicalJSON(value)).digest('hex').slice(0, 8);
}

function canonicalJSON(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJSON).join(',')}]`;
  if (isObject(value)) {
    return `{${Object.keys(value)
      .filter((k) => value[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJSON(value[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * The child's name: `<set>-<key>` when that fits a search name (63 characters), else
 * `<set>-<hash>` with a short hash of the combination's names. The same combination always
 * gets the same name, whatever else the set's spec says.
 */
export function childName(set: string, c: Combination): string {
  const readable = `${set}-${combinationKey(c)}`;
  return readable.length <= MAX_NAME_LENGTH ? readable : `${set}-${shortHash(combinationLabel(c))}`;
}

/** The spec of a combination's child: the template with the combination merged onto it (and the set's queueName, when it has one). */
export function childSpec(template: Json, c: Combination, queueName?: string): Json {
  let spec = structuredClone(template);
  if (queueName !== undefined) spec.queueName = queueName;
  if (c.dataset) spec = deepMerge(spec, { dataset: c.dataset.fields });
  if (c.seed !== undefined) spec = deepMerge(spec, { seed: c.seed });
  if (c.search) spec = deepMerge(spec, { search: c.search.fields });
  return spec;
}
