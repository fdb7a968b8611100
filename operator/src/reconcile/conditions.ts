// metav1.Condition bookkeeping: lastTransitionTime changes only when status changes.
import type { Condition } from '../api/index.ts';

export function setCondition(
  conditions: Condition[],
  next: { type: string; status: 'True' | 'False' | 'Unknown'; reason: string; message: string },
  now: Date,
  observedGeneration: number | undefined,
): Condition[] {
  const previous = conditions.find((c) => c.type === next.type);
  const condition: Condition = {
    type: next.type,
    status: next.status,
    reason: next.reason,
    message: next.message,
    lastTransitionTime: previous && previous.status === next.status ? previous.lastTransitionTime : now.toISOString(),
  };
  if (observedGeneration !== undefined) condition.observedGeneration = observedGeneration;
  const rest = conditions.filter((c) => c.type !== next.type);
  return [...rest, condition].sort((a, b) => ORDER.indexOf(a.type) - ORDER.indexOf(b.type));
}

const ORDER = ['Ready', 'Reconciling', 'Stalled', 'BudgetExceeded'];

export function getCondition(conditions: Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}
