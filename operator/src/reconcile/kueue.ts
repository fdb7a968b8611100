// What the operator knows of Kueue (kueue.x-k8s.io): the label that hands a pod to a
// LocalQueue, the scheduling gate Kueue holds a pod with until its Workload is admitted,
// and the pod condition it writes before deleting a pod it evicts or preempts. The trainer
// never reads these, so they live here and not in contract/.
import type { KubeObject } from './types.ts';

/** Label of a pod that Kueue admits through the LocalQueue it names (spec.queueName). */
export const KUEUE_QUEUE_LABEL = 'kueue.x-k8s.io/queue-name';
/** Scheduling gate Kueue puts on a pod at creation and removes when the pod's Workload is admitted. */
export const KUEUE_ADMISSION_GATE = 'kueue.x-k8s.io/admission';
/** Pod condition Kueue writes (reason: why it stops the pod) before it deletes an evicted or preempted pod. */
export const KUEUE_TERMINATION_TARGET = 'TerminationTarget';

/** The LocalQueue that holds a pod back: set while the pod carries Kueue's admission gate. */
export function kueueQueueHolding(pod: KubeObject): string | undefined {
  const gates = (pod.spec as { schedulingGates?: Array<{ name?: string }> } | undefined)?.schedulingGates ?? [];
  if (!gates.some((g) => g.name === KUEUE_ADMISSION_GATE)) return undefined;
  return pod.metadata.labels?.[KUEUE_QUEUE_LABEL] ?? '';
}
