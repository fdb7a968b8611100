// Progress reported by trainer pods: the latest accepted event per search (kept in
// memory and handed to reconcile as input.progress), and the check of a trainer's
// bearer token against the search's own Secret `<name>-progress` (key `token`).
import { createHash, timingSafeEqual } from 'node:crypto';
import type { ProgressEvent } from '../../../trainer/src/report/events.ts';
import type { KubeObject } from '../k8s/types.ts';

export const LABEL_SEARCH = 'iac.dev/search';
export const progressSecretName = (search: string) => `${search}-progress`;

export type TokenCheck = 'ok' | 'unauthorized' | 'forbidden';

/** Reads the token of a progress Secret (data is base64, stringData as written). */
export function secretToken(secret: KubeObject | undefined): string | undefined {
  if (!secret) return undefined;
  const data = secret.data as Record<string, string> | undefined;
  if (data?.token) return Buffer.from(data.token, 'base64').toString('utf8');
  const stringData = secret.stringData as Record<string, string> | undefined;
  return stringData?.token || undefined;
}

/** Constant-time comparison of two secrets of any length. */
export function sameSecret(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

/**
 * Checks `token` for the search namespace/name: 'ok' when it is that search's token,
 * 'forbidden' when it is the token of another search, 'unauthorized' otherwise.
 */
export function checkToken(secrets: readonly KubeObject[], namespace: string, name: string, token: string): TokenCheck {
  let result: TokenCheck = 'unauthorized';
  // Compare against every progress secret so the answer's timing does not depend on which one matches.
  for (const s of secrets) {
    const search = s.metadata.labels?.[LABEL_SEARCH];
    if (!search || s.metadata.name !== progressSecretName(search)) continue;
    const expected = secretToken(s);
    if (!expected || !sameSecret(token, expected)) continue;
    if (s.metadata.namespace === namespace && search === name) result = 'ok';
    else if (result !== 'ok') result = 'forbidden';
  }
  return result;
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
