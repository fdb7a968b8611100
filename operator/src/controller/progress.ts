// Progress reported by trainer pods: the latest accepted event per search (kept in
// memory and handed to reconcile as input.progress), the check of a trainer's bearer
// token against the search's own Secret `<name>-progress` (key `token`), and the bounds
// an event must keep before it is accepted.
//
// Anyone who may create Secrets can make labelled ones, so the token check never looks
// at more than one Secret (the one of the search the request names), counts it only when
// the operator created it (controller owner reference with the search's uid), and the
// Secret cache keeps no Secret data at all: only a SHA-256 of the token.
import { createHash, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { RetrainConfig, SearchConfig } from '../../../trainer/src/config/index.ts';
import { LABEL_SEARCH, ProgressEvent, progressSecretName } from '../../../contract/src/index.ts';
import type { KubeObject } from '../k8s/types.ts';

export type TokenCheck = 'ok' | 'unauthorized';

/** A field of a progress event that is out of bounds, and why. */
export interface ProgressIssue {
  field: string;
  message: string;
}

/** Tokens longer than this are nobody's (the operator's are 43 characters). */
export const MAX_TOKEN_LENGTH = 1024;

/** Where a slimmed progress Secret keeps the SHA-256 of its token (base64). */
const TOKEN_HASH = 'tokenSHA256';

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest();
const NO_TOKEN = sha256('no token: never matches');

/** The token bytes of a progress Secret as read from the API (data is base64). */
function tokenBytes(secret: KubeObject): Buffer | undefined {
  const data = secret.data as Record<string, unknown> | undefined;
  if (typeof data?.token === 'string' && data.token.length > 0 && data.token.length <= (MAX_TOKEN_LENGTH * 4) / 3 + 4) {
    return Buffer.from(data.token, 'base64');
  }
  const stringData = secret.stringData as Record<string, unknown> | undefined;
  if (typeof stringData?.token === 'string' && stringData.token.length > 0 && stringData.token.length <= MAX_TOKEN_LENGTH) {
    return Buffer.from(stringData.token, 'utf8');
  }
  return undefined;
}

/** The SHA-256 of a progress Secret's token: from a slimmed Secret, or computed from a whole one. */
function tokenHash(secret: KubeObject): Buffer | undefined {
  const kept = secret[TOKEN_HASH];
  if (typeof kept === 'string') {
    const hash = Buffer.from(kept, 'base64');
    return hash.length === NO_TOKEN.length ? hash : undefined;
  }
  const bytes = tokenBytes(secret);
  return bytes ? sha256(bytes) : undefined;
}

/**
 * What the operator keeps of a Secret it watches: name, namespace, uid, resource version,
 * the iac.dev/search label, the controller owner reference, and the SHA-256 of `data.token`.
 * No data, annotations or managed fields: a labelled Secret of 1 MB costs a few hundred bytes.
 */
export function slimSecret(secret: KubeObject): KubeObject {
  const m = secret.metadata;
  const search = m.labels?.[LABEL_SEARCH];
  const controller = m.ownerReferences?.find((r) => r.controller === true);
  const bytes = tokenBytes(secret);
  const metadata: KubeObject['metadata'] = { name: m.name };
  if (m.namespace !== undefined) metadata.namespace = m.namespace;
  if (m.uid !== undefined) metadata.uid = m.uid;
  if (m.resourceVersion !== undefined) metadata.resourceVersion = m.resourceVersion;
  if (m.creationTimestamp !== undefined) metadata.creationTimestamp = m.creationTimestamp;
  if (m.deletionTimestamp !== undefined) metadata.deletionTimestamp = m.deletionTimestamp;
  if (search !== undefined) metadata.labels = { [LABEL_SEARCH]: search };
  if (controller) {
    metadata.ownerReferences = [{ apiVersion: controller.apiVersion, kind: controller.kind, name: controller.name, uid: controller.uid, controller: true }];
  }
  const slim: KubeObject = { apiVersion: secret.apiVersion || 'v1', kind: secret.kind || 'Secret', metadata };
  if (bytes) slim[TOKEN_HASH] = sha256(bytes).toString('base64');
  return slim;
}

/** True when `secret` is the progress Secret the operator created for `search`. */
function ownedBy(secret: KubeObject, search: KubeObject): boolean {
  const uid = search.metadata.uid;
  if (!uid || secret.metadata.namespace !== search.metadata.namespace) return false;
  if (secret.metadata.name !== progressSecretName(search.metadata.name)) return false;
  const ref = secret.metadata.ownerReferences?.find((r) => r.controller === true);
  return ref?.kind === 'IACSearch' && ref.uid === uid && ref.name === search.metadata.name;
}

/**
 * Checks `token` for one search: 'ok' only when it is the token in the progress Secret
 * that the operator created for that search (`secret`: the cached `<name>-progress` of
 * the search's namespace; `search`: the cached IACSearch). One hash and one constant-time
 * comparison, whatever else the cache holds.
 */
export function checkToken(secret: KubeObject | undefined, search: KubeObject | undefined, token: string): TokenCheck {
  if (!token || token.length > MAX_TOKEN_LENGTH) return 'unauthorized';
  const expected = secret && search && ownedBy(secret, search) ? tokenHash(secret) : undefined;
  // The same work whether or not there is anything to compare with.
  const same = timingSafeEqual(sha256(token), expected ?? NO_TOKEN);
  return same && expected ? 'ok' : 'unauthorized';
}

// ---- bounds of a progress event ----

/** An epoch count no phase reaches (the spec allows at most 10,000). */
const MAX_EPOCHS = 100_000;
/** Operations or edges over all cells: 5 cells of 44 edges of 10 operations is 2,200. */
const MAX_COUNT = 1_000_000;
/** ETAs and epoch durations above a year are nonsense. */
export const MAX_SECONDS = 366 * 24 * 3600;
const MAX_LOSS = 1e6;
const MAX_EDGES = 1_000;
/** An RFC 3339 time is at most 35 characters; a little room for other ISO 8601 forms. */
export const MAX_TIME_LENGTH = 64;

const count = (max: number) => z.int().min(0).max(max);
const seconds = z.number().min(0).max(MAX_SECONDS);

/**
 * The trainer's ProgressEvent with every field bounded and the counts consistent with each
 * other (epoch <= maxEpochs, stableEdges <= totalEdges, activeOperations <= totalOperations).
 * Unknown fields are dropped. An issue's path names the field.
 */
export const BoundedProgressEvent = ProgressEvent.extend({
  epoch: count(MAX_EPOCHS),
  maxEpochs: count(MAX_EPOCHS),
  trainLoss: z.number().min(-MAX_LOSS).max(MAX_LOSS).optional(),
  valLoss: z.number().min(-MAX_LOSS).max(MAX_LOSS).optional(),
  activeOperations: count(MAX_COUNT).optional(),
  totalOperations: count(MAX_COUNT).optional(),
  stableEdges: count(MAX_COUNT).optional(),
  totalEdges: count(MAX_COUNT).optional(),
  edgeJsd: z
    .record(
      z
        .string()
        .max(16)
        .regex(/^\d+\.\d+$/, 'keys are "<cell>.<edge>"'),
      z.number().min(0).max(1e3),
    )
    .refine((r) => Object.keys(r).length <= MAX_EDGES, `at most ${MAX_EDGES} edges`)
    .optional(),
  epochSeconds: seconds.optional(),
  etaSeconds: seconds.optional(),
  etaMaxSeconds: seconds.optional(),
  time: z
    .string()
    .max(MAX_TIME_LENGTH)
    .refine((t) => !Number.isNaN(Date.parse(t)), 'must be a date and time (ISO 8601, e.g. 2026-01-31T12:00:00Z)')
    .optional(),
}).superRefine((e, ctx) => {
  const atMost = (field: 'epoch' | 'stableEdges' | 'activeOperations', value: number | undefined, bound: number | undefined, boundName: string) => {
    if (value !== undefined && bound !== undefined && value > bound) {
      ctx.addIssue({ code: 'custom', path: [field], message: `${value} is more than ${boundName} (${bound})` });
    }
  };
  atMost('epoch', e.epoch, e.maxEpochs, 'maxEpochs');
  atMost('stableEdges', e.stableEdges, e.totalEdges, 'totalEdges');
  atMost('activeOperations', e.activeOperations, e.totalOperations, 'totalOperations');
});

/** An issue's path as a field name; a record key (e.g. of edgeJsd) is cut short, not echoed whole. */
function fieldName(path: readonly PropertyKey[]): string {
  return path.map((p) => (String(p).length > 32 ? `${String(p).slice(0, 32)}...` : String(p))).join('.');
}

/** Validates a progress event's body: the event, or the issues naming each bad field. */
export function parseProgressEvent(body: unknown): { ok: true; event: ProgressEvent } | { ok: false; issues: ProgressIssue[] } {
  const parsed = BoundedProgressEvent.safeParse(body);
  if (parsed.success) return { ok: true, event: parsed.data };
  return {
    ok: false,
    issues: parsed.error.issues.map((i) => ({ field: fieldName(i.path) || '(body)', message: i.message.slice(0, 200) })),
  };
}

/** The epoch budget of a phase in the search's spec (defaults applied), if it has one. */
function epochBudget(search: KubeObject, phase: ProgressEvent['phase']): { field: string; value: number } | undefined {
  const spec = (search.spec ?? {}) as { search?: { maxEpochs?: unknown }; retrain?: { epochs?: unknown } };
  const read = (schema: z.ZodType<number>, value: unknown) => {
    const r = schema.safeParse(value);
    return r.success ? r.data : undefined;
  };
  if (phase === 'search') {
    const value = read(SearchConfig.shape.maxEpochs, spec.search?.maxEpochs);
    return value === undefined ? undefined : { field: 'spec.search.maxEpochs', value };
  }
  if (phase === 'retrain') {
    const value = read(RetrainConfig.shape.epochs, spec.retrain?.epochs);
    return value === undefined ? undefined : { field: 'spec.retrain.epochs', value };
  }
  return undefined;
}

/**
 * Checks a (bounded) event against the search it reports for: a phase never runs more
 * epochs than the spec gives it (search: spec.search.maxEpochs, retrain:
 * spec.retrain.epochs). Empty when it fits, or when the search is not known.
 */
export function progressIssuesAgainstSpec(search: KubeObject | undefined, event: ProgressEvent): ProgressIssue[] {
  if (!search) return [];
  const budget = epochBudget(search, event.phase);
  if (!budget) return [];
  const issues: ProgressIssue[] = [];
  for (const field of ['maxEpochs', 'epoch'] as const) {
    if (event[field] > budget.value) issues.push({ field, message: `${event[field]} is more than ${budget.field} (${budget.value})` });
  }
  return issues;
}

/** The latest accepted progress event per search key ("namespace/name"). */
export class ProgressStore {
  private readonly latest = new Map<string, { event: ProgressEvent; receivedAt: number }>();

  set(key: string, event: ProgressEvent, receivedAt = Date.now()): void {
    this.latest.set(key, { event, receivedAt });
  }

  get(key: string): ProgressEvent | undefined {
    return this.latest.get(key)?.event;
  }

  delete(key: string): void {
    this.latest.delete(key);
  }

  size(): number {
    return this.latest.size;
  }
}
