// Running the current phase: keep its live attempt, wait for an old pod to go, back off
// after a failure, or create the next attempt's pod (with the progress Secret and the
// artifacts claim it needs), unless the pod policy or the API server refuses it.
import { STAGE_PHASE, type Stage } from '../api/index.ts';
import { artifactsClaimName, buildArtifactsClaim, buildPod, buildProgressSecret, progressSecretName } from './children.ts';
import { dropEvent, event, iso, namespaceOf, record, requeueAfter, seconds, setReadiness, type Draft } from './draft.ts';
import { stall, stallOnRefusal, WAIT_RESYNC_SECONDS } from './outcomes.ts';
import { policyViolations } from './policy.ts';
import type { Action, KubeObject } from './types.ts';

/** Exponential backoff between failed attempts of a phase, as a Job does it. */
export const BACKOFF_BASE_SECONDS = 10;
export const BACKOFF_MAX_SECONDS = 360;
/** How long a pod we created may be missing from the (informer-cached) pod list before it counts as vanished. */
export const CREATE_GRACE_SECONDS = 30;
/** Look again at a running phase this often: GPU-seconds, budget and deadline move with the clock. */
export const RUNNING_RESYNC_SECONDS = 60;

export function backoffSeconds(failures: number): number {
  return Math.min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** Math.max(0, failures - 1));
}

/** Whether the API server refused creating this object in the previous try of this reconcile. */
function refusedCreate(d: Draft, object: KubeObject): boolean {
  const refused = d.input.refused;
  return refused !== undefined && refused.kind === object.kind && refused.name === object.metadata.name;
}

/** The operator's pod policy (docs/pod-policy.md); an empty list when there is none. */
function policyViolationsOf(d: Draft): string[] {
  const policy = d.input.settings.policy;
  return policy ? policyViolations(d.search, policy, d.input.settings.defaultImage, d.input.persistentVolumeClaims) : [];
}

/** Creates the progress Secret and the artifacts claim when missing; false when the API server refused one. */
function ensureChildren(d: Draft): boolean {
  const name = d.search.metadata.name;
  const wanted: KubeObject[] = [];
  if (!d.input.secrets.some((s) => s.metadata.name === progressSecretName(name))) {
    wanted.push(buildProgressSecret(d.search, d.input.newToken));
  }
  if (!d.search.spec.artifacts.claimName && !d.input.persistentVolumeClaims.some((c) => c.metadata.name === artifactsClaimName(d.search))) {
    wanted.push(buildArtifactsClaim(d.search));
  }
  if (wanted.some((o) => refusedCreate(d, o))) return false;
  for (const object of wanted) d.actions.push({ type: 'create', object });
  return true;
}

export function run(d: Draft, stage: Stage) {
  const r = record(d, stage);
  const phase = STAGE_PHASE[stage];
  const resuming = d.previousPhase === 'Suspended';

  const mine = d.attempts.filter((a) => a.stage === stage && (a.state === 'Waiting' || a.state === 'Running'));
  const stopped = new Set((r.history ?? []).map((h) => h.pod));
  const live = mine.filter((a) => !a.terminating && !stopped.has(a.name));
  const going = mine.filter((a) => a.terminating || stopped.has(a.name));

  if (live.length === 0) {
    // Before anything is created for the next attempt (its claim included): what the
    // platform team's policy refuses never becomes a pod. A pod already running is left
    // to finish.
    const violations = policyViolationsOf(d);
    if (violations.length > 0) {
      r.message = `no ${stage} pod is created: the operator's pod policy refuses this search`;
      stall(
        d,
        stage,
        'PolicyViolation',
        `the operator's pod policy (set by the platform team) refuses what this search asks of its pods, so no pod is created:\n${violations.map((v) => `- ${v}`).join('\n')}\nThese fields are immutable: create a new IACSearch without them (see docs/pod-policy.md).`,
      );
      return;
    }
  }

  if (!d.status.startTime) d.status.startTime = iso(d.now);
  if (!ensureChildren(d)) {
    stallOnRefusal(d, stage);
    return;
  }
  d.status.phase = phase;
  // A phase change is in the status (phase, conditions, phases.<stage>); an event for it
  // only with settings.phaseEvents, or when a suspended search resumes. When this
  // reconcile also creates the pod the event names it (docs/operator-scale.md: events
  // were the most frequent request of a search's life).
  let started: Extract<Action, { type: 'event' }> | undefined;
  if (d.previousPhase !== phase && (resuming || d.input.settings.phaseEvents)) {
    event(d, 'Normal', resuming ? 'Resumed' : phase, resuming ? `resuming ${stage} from its checkpoint` : `${stage} phase started`);
    started = d.actions[d.actions.length - 1] as Extract<Action, { type: 'event' }>;
  }

  if (live.length > 0) {
    // Keep the newest attempt; an older one still alive (it cannot normally be) must not write the same checkpoints.
    const active = live[live.length - 1];
    for (const extra of live.slice(0, -1)) {
      d.actions.push({ type: 'delete', kind: 'Pod', name: extra.name, namespace: namespaceOf(d) });
    }
    r.pod = active.name;
    r.attempts = Math.max(r.attempts, active.attempt);
    r.startTime ??= iso(d.now);
    if (active.state === 'Waiting' && active.queue !== undefined) {
      // Kueue holds the pod until its Workload fits the ClusterQueue's quota; why it waits
      // is on the Workload (kubectl describe workload), not on the pod.
      r.message = `${stage} attempt ${active.attempt} queued by Kueue in LocalQueue ${active.queue || '(unnamed)'} until its Workload is admitted (pod ${active.name}; queued time is not GPU time)`;
      setReadiness(d, 'working', 'Queued', r.message);
    } else if (active.state === 'Waiting' && active.reason) {
      const waiting = active.reason === 'Unschedulable' ? 'waiting for a node (waiting time is not GPU time)' : `waiting (${active.reason})`;
      r.message = `${stage} attempt ${active.attempt} ${waiting}: ${active.message ?? ''}`.trim();
      setReadiness(d, 'working', active.reason === 'Unschedulable' ? 'WaitingForResources' : active.reason, r.message);
    } else {
      r.message = `${stage} attempt ${active.attempt} ${active.state === 'Running' ? 'running' : 'starting'} (pod ${active.name})`;
      setReadiness(d, 'working', phase, r.message);
    }
    requeueAfter(d, RUNNING_RESYNC_SECONDS);
    return;
  }
  if (going.length > 0) {
    // Never two attempts on the same checkpoints: wait until the old pod is gone.
    r.message = `waiting for pod ${going.map((a) => a.name).join(', ')} to terminate before the next ${stage} attempt`;
    setReadiness(d, 'working', 'WaitingForPodTermination', r.message);
    requeueAfter(d, WAIT_RESYNC_SECONDS);
    return;
  }

  // The latest attempt we created is neither running nor recorded as finished.
  let attempt = Math.max(r.attempts, ...d.attempts.filter((a) => a.stage === stage).map((a) => a.attempt), 0);
  if (r.pod && !d.attempts.some((a) => a.name === r.pod) && !r.history?.some((h) => h.pod === r.pod)) {
    const createdAgo = r.lastAttemptTime ? (d.now.getTime() - Date.parse(r.lastAttemptTime)) / 1000 : Infinity;
    if (createdAgo < CREATE_GRACE_SECONDS) {
      // Likely just created and not yet in the informer's cache: creating it again is
      // harmless (AlreadyExists) and never starts a second attempt.
      const again = buildPod(d.search, stage, attempt, d.input.settings);
      if (refusedCreate(d, again)) {
        dropEvent(d, started);
        stallOnRefusal(d, stage);
        return;
      }
      d.actions.push({ type: 'create', object: again });
      r.message = `${stage} attempt ${attempt} created (pod ${r.pod})`;
      setReadiness(d, 'working', phase, r.message);
      requeueAfter(d, WAIT_RESYNC_SECONDS);
      return;
    }
    r.history ??= [];
    r.history.push({ pod: r.pod, outcome: 'Disrupted', gpuSeconds: 0, endTime: iso(d.now), reason: 'PodVanished' });
    r.preemptions += 1;
    event(d, 'Warning', 'AttemptDisrupted', `${stage} pod ${r.pod} vanished; starting a new attempt from the checkpoint`);
  }

  const last = r.history?.[r.history.length - 1];
  if (last?.outcome === 'Failed' && r.failures > 0) {
    const retryAt = Date.parse(last.endTime ?? iso(d.now)) + backoffSeconds(r.failures) * 1000;
    if (d.now.getTime() < retryAt) {
      const wait = seconds(retryAt - d.now.getTime());
      r.message = `${stage} attempt ${attempt} failed (${r.failures} of ${d.search.spec.backoffLimit + 1} allowed); retrying in ${wait}s`;
      setReadiness(d, 'working', 'BackoffAfterFailure', r.message);
      requeueAfter(d, wait);
      return;
    }
  }

  attempt += 1;
  const pod = buildPod(d.search, stage, attempt, d.input.settings);
  if (refusedCreate(d, pod)) {
    // Not an attempt: it never existed. The attempt number stays for the retry.
    dropEvent(d, started);
    r.message = `${stage} attempt ${attempt} could not be created (pod ${pod.metadata.name}): the API server refused it`;
    stallOnRefusal(d, stage);
    return;
  }
  d.actions.push({ type: 'create', object: pod });
  r.attempts = attempt;
  r.pod = pod.metadata.name;
  r.lastAttemptTime = iso(d.now);
  r.startTime ??= iso(d.now);
  r.message = `${stage} attempt ${attempt} created (pod ${pod.metadata.name})`;
  setReadiness(d, 'working', phase, r.message);
  if (started) {
    // After the pod in the actions: a pod the API server refuses was never started.
    started.message = `${started.message}: ${r.message}`;
    dropEvent(d, started);
    d.actions.push(started);
  } else if (attempt > 1) {
    // A new attempt after a failure or a disruption (each had its Warning).
    event(d, 'Normal', 'PodCreated', r.message);
  }
  requeueAfter(d, WAIT_RESYNC_SECONDS);
}
