// The chart on a real node: a kubelet, containerd, runc, the bridge CNI and kube-proxy
// (test/node/real-node.ts) joined to the test control plane, our own images built by
// test/images/build.sh and imported into containerd. The operator runs as the chart's
// Deployment (its memory limit, probes and restricted security context apply), the
// namespace enforces the `restricted` Pod Security Standard, and
// deploy/examples/phantom-quick.yaml runs to Succeeded in real containers: real
// termination messages, a real hostPath PersistentVolume for the artifacts, progress
// POSTed to the operator's Service through kube-proxy. The operator pod is deleted in
// the middle of the search: the Deployment's next pod takes over, the search finishes
// and nothing is counted twice. A trainer killed at its memory limit shows the
// out-of-memory reason on the resource and is retried as docs/iacsearch-api.md says.
import { chownSync, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { startCluster, waitFor, type Cluster } from '../cluster/control-plane.ts';
import type { KubeJSON } from '../cluster/kube-client.ts';
import { clusterAvailability } from '../cluster/suite.ts';
import { findImageArchives, imageRef } from '../images/images.ts';
import { nodeAvailability, startNode, type RealNode } from '../node/real-node.ts';
import { repoRoot, requireTools, run } from '../packaging/tools.ts';
import { iacsPath, searchPods, waitForSearch } from './env.ts';

const tools = requireTools('helm');
const cluster = clusterAvailability();
const node = nodeAvailability();
const inCI = process.env.CI === 'true' || process.env.CI === '1';
const archives = findImageArchives();
if (!archives.ok && !inCI) console.warn(`skipping the real-node chart suite: ${archives.reason}`);
const skip = tools.skip || cluster.skip || node.skip || (!archives.ok && !inCI);

const NS = 'iac-system';
const RELEASE = 'iac-operator';
// A fixed ClusterIP: there is no cluster DNS here, so trainer pods reach the operator's
// Service by address (chart values service.clusterIP and progressURL).
const SERVICE_IP = '10.0.0.80';

describe.skipIf(skip)('the chart with our images on a real node', () => {
  let c: Cluster;
  let n: RealNode;

  const kubectl = async (args: string[], input?: string) => {
    const r = await c.kubectl(args, { input, allowFail: true, timeoutMs: 120_000 });
    return { ...r, out: r.stdout + r.stderr };
  };
  const operatorPods = async () =>
    (
      (await c.client.get(`/api/v1/namespaces/${NS}/pods?labelSelector=${encodeURIComponent('app.kubernetes.io/name=iac-operator')}`)).items as KubeJSON[]
    ).filter((p) => !p.metadata.deletionTimestamp);
  /** A pool volume for the next artifacts claim, owned by the trainer's uid as a provisioner would make it (hostPath keeps the host's ownership; fsGroup does not apply). */
  const trainerVolume = async () => {
    const [pv] = await c.addPersistentVolumes(1, '10Gi');
    const hostDir = (await c.client.get(`/api/v1/persistentvolumes/${pv}`)).spec.hostPath.path as string;
    chownSync(hostDir, 1000, 1000);
    return hostDir;
  };
  /** The last lines of a pod's log, for failure messages. */
  const podLogs = async (pod: string) => {
    const r = await kubectl(['logs', '-n', NS, pod, '--tail=40']);
    return [`--- ${pod} (kubectl logs, last 40 lines):`, r.out.trim()];
  };
  const operatorLogs = async () => (await Promise.all((await operatorPods()).map((p) => podLogs(p.metadata.name)))).flat();
  const readyOperator = () =>
    waitFor(
      'an operator pod Ready',
      async () => (await operatorPods()).find((p) => p.status?.conditions?.some((k: KubeJSON) => k.type === 'Ready' && k.status === 'True')),
      300_000,
      1000,
    );

  beforeAll(async () => {
    tools.assertPresent();
    for (const reason of [cluster.reason, node.reason, archives.ok ? undefined : archives.reason]) if (reason) throw new Error(reason);
    if (!archives.ok) return;
    c = await startCluster({ realNodes: true, persistentVolumes: 0 });
    n = await startNode(c);
    await Promise.all([n.importImage(archives.images.operator.archive), n.importImage(archives.images['trainer-cpu'].archive)]);

    await c.client.create('/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: NS, labels: { 'pod-security.kubernetes.io/enforce': 'restricted', 'pod-security.kubernetes.io/enforce-version': 'latest' } },
    });
    const [opRepo, opTag] = imageRef('operator').split(/:(?=[^:]*$)/);
    const [trRepo, trTag] = imageRef('trainer-cpu').split(/:(?=[^:]*$)/);
    const sets = [
      `image.repository=${opRepo}`,
      `image.tag=${opTag}`,
      `image.pullPolicy=Never`,
      `trainerImage.repository=${trRepo}`,
      `trainerImage.tag=${trTag}`,
      // One replica: the node has 2 cores, and a rollout's surge pod is not what this proves.
      'replicaCount=1',
      `service.clusterIP=${SERVICE_IP}`,
      `progressURL=http://${SERVICE_IP}:8080/v1/progress`,
      // Progress news reaches the status at most once per --progress-interval (1m by
      // default) after the phase's first write; the search phase takes well under a
      // minute here, so without this no progress would show before it ends.
      'extraArgs[0]=--progress-interval=2s',
    ];
    const r = run(tools.paths.helm, [
      'install',
      RELEASE,
      path.join(repoRoot, 'charts/iac-operator'),
      '--namespace',
      NS,
      '--kubeconfig',
      c.kubeconfigPath,
      ...sets.flatMap((s) => ['--set', s]),
    ]);
    expect(r.status, r.stderr).toBe(0);
    c.invalidateKubectlCache();
    await readyOperator();
  }, 900_000);

  afterAll(async () => {
    await n?.stop();
    await c?.stop();
  });

  it('runs phantom-quick to Succeeded in real containers, and survives its operator pod being deleted mid-search', async () => {
    // The artifacts claim binds to a hostPath PersistentVolume the trainer (uid 1000) writes.
    const hostDir = await trainerVolume();
    const example = parseYaml(readFileSync(path.join(repoRoot, 'deploy/examples/phantom-quick.yaml'), 'utf8'));
    const applied = await kubectl(['apply', '-n', NS, '-f', '-'], toYaml(example));
    expect(applied.code, applied.out).toBe(0);

    // Mid-search: once the trainer has reported progress from the search phase. A search
    // that leaves Searching first fails at once, with the pods' logs.
    let passed: string | undefined;
    const searching = await waitForSearch(
      c,
      NS,
      'phantom-quick',
      'search progress from the trainer pod',
      (s) => {
        if (s.status?.phase === 'Searching' && s.status?.progress?.updateTime) return true;
        if (s.status?.phases?.search?.endTime) passed = s.status.phase;
        return false;
      },
      600_000,
      async () =>
        passed &&
        `the search phase ended (${passed}) with no progress from its pod seen:\n${[...(await podLogs('phantom-quick-search-1')), ...(await operatorLogs())].join('\n')}`,
    );
    expect(searching.status.phases.search.pod).toBe('phantom-quick-search-1');
    const [first] = await operatorPods();
    const del = await kubectl(['delete', 'pod', '-n', NS, first.metadata.name, '--wait=true']);
    expect(del.code, del.out).toBe(0);
    const second = await readyOperator();
    expect(second.metadata.name).not.toBe(first.metadata.name);

    const done = await waitForSearch(c, NS, 'phantom-quick', 'Succeeded', (s) => ['Succeeded', 'Failed'].includes(s.status?.phase), 1_200_000);
    expect(done.status.phase, JSON.stringify(done.status, null, 1)).toBe('Succeeded');
    const st = done.status;
    expect(st.results.meanDice).toBeGreaterThan(0.5);
    expect(st.genotype.cells.length).toBe(example.spec.backbone.depth);

    // Nothing counted twice: one attempt and one history record per phase, no failures.
    for (const stage of ['search', 'prune', 'retrain', 'evaluate']) {
      const p = st.phases[stage];
      expect(p.attempts, stage).toBe(1);
      expect(p.failures ?? 0, stage).toBe(0);
      expect(p.history.length, stage).toBe(1);
      expect(p.history[0].outcome, stage).toBe('Succeeded');
    }

    // Real containers: the kubelet's termination message is the trainer's PhaseResult.
    const pods = await searchPods(c, NS, 'phantom-quick');
    expect(pods.map((p) => p.metadata.name)).toEqual([
      'phantom-quick-evaluate-1',
      'phantom-quick-prune-1',
      'phantom-quick-retrain-1',
      'phantom-quick-search-1',
    ]);
    for (const p of pods) {
      expect(p.spec.nodeName).toBe(n.name);
      const t = p.status.containerStatuses[0].state.terminated;
      expect(t.exitCode, p.metadata.name).toBe(0);
      const result = JSON.parse(t.message.trim().split('\n').at(-1));
      expect(result).toMatchObject({ type: 'result', ok: true });
      expect(p.status.containerStatuses[0].imageID).toMatch(/sha256:/);
    }
    // The artifacts are on the PersistentVolume's directory on the host.
    expect(existsSync(path.join(hostDir, 'results.json')), `results.json in ${hostDir}`).toBe(true);
    const results = JSON.parse(readFileSync(path.join(hostDir, 'results.json'), 'utf8'));
    expect(results.model.meanDice).toBeCloseTo(st.results.meanDice, 6);
  }, 1_800_000);

  it('reports a trainer killed at its memory limit as out of memory and retries it per backoffLimit', async () => {
    await trainerVolume();
    const example = parseYaml(readFileSync(path.join(repoRoot, 'deploy/examples/phantom-quick.yaml'), 'utf8'));
    example.metadata.name = 'oom';
    example.spec.backoffLimit = 1;
    // Below what Node.js and native TensorFlow need to start at all: the kernel kills the
    // trainer while it loads, before its own memory check can refuse the configuration
    // (from 160Mi on, that check answers first, with exit status 2 and the sizes to change).
    example.spec.resources.phases = { search: { memory: '100Mi' } };
    const applied = await kubectl(['apply', '-n', NS, '-f', '-'], toYaml(example));
    expect(applied.code, applied.out).toBe(0);

    const failed = await waitForSearch(c, NS, 'oom', 'Failed', (s) => ['Succeeded', 'Failed'].includes(s.status?.phase), 900_000);
    expect(failed.status.phase, JSON.stringify(failed.status, null, 1)).toBe('Failed');
    const search = failed.status.phases.search;
    // backoffLimit 1: the first attempt and one retry, both killed.
    expect(search.failures, JSON.stringify(failed.status, null, 1)).toBe(2);
    expect(search.history.map((h: KubeJSON) => [h.outcome, h.reason, h.exitCode])).toEqual([
      ['Failed', 'OOMKilled', 137],
      ['Failed', 'OOMKilled', 137],
    ]);
    expect(search.message).toContain('ran out of memory');
    expect(search.message).toContain('100Mi');
    const ready = failed.status.conditions.find((k: KubeJSON) => k.type === 'Ready');
    expect(ready.reason).toBe('BackoffLimitExceeded');
    expect(ready.message).toContain('ran out of memory');
    const shown = await kubectl(['get', 'iacs', '-n', NS, 'oom']);
    expect(shown.stdout).toContain('Failed');
    expect((await c.client.get(iacsPath(NS, 'oom'))).status.phases.prune).toBeUndefined();
  }, 1_200_000);
});
