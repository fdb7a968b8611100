// The phantom-quick example end to end: `kubectl apply` of deploy/examples/phantom-quick.yaml,
// the operator runs each phase as a pod, the real trainer runs in each pod (test kubelet),
// and the search ends Succeeded with its genotype, patient-level Dice and cost in the
// status and in `kubectl get iacs`. Also: the progress endpoint refuses a pod that reports
// with another search's token.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { waitFor } from '../cluster/control-plane.ts';
import { clusterAvailability } from '../cluster/suite.ts';
import { REPO_ROOT } from '../cluster/test-kubelet.ts';
import {
  createNamespace,
  iacsPath,
  isPhase,
  podGPUSeconds,
  searchPods,
  startE2E,
  startOperator,
  tinySearch,
  waitForSearch,
  type E2EEnv,
  type OperatorHandle,
} from './env.ts';

const availability = clusterAvailability();
const ns = 'example';
const GPU_PRICE = 2.5;

describe.skipIf(availability.skip)('phantom-quick example in a cluster', () => {
  let env: E2EEnv;
  let operator: OperatorHandle;

  beforeAll(async () => {
    env = await startE2E({ kubelet: { nodes: [{ name: 'gpu-node-a', cpu: '8', memory: '32Gi', gpus: 2 }] } });
    await createNamespace(env.cluster, ns);
    operator = await startOperator(env.cluster);
  });

  afterAll(async () => {
    await env?.stop();
  });

  it('runs every phase with the real trainer to Succeeded, with genotype, Dice and cost', async () => {
    // The example as shipped, placed in the test namespace and given one GPU and a GPU
    // price so that the cost accounting has something to count.
    const example = parseYaml(readFileSync(path.join(REPO_ROOT, 'deploy', 'examples', 'phantom-quick.yaml'), 'utf8'));
    example.metadata.namespace = ns;
    example.spec.resources.gpus = 1;
    example.spec.cost = { gpuHourlyUSD: GPU_PRICE };
    await env.cluster.kubectl(['apply', '-f', '-'], { input: toYaml(example) });

    const running = await waitForSearch(env.cluster, ns, 'phantom-quick', 'Searching', isPhase('Searching'), 120_000);
    expect(running.status.phases.search.pod).toBe('phantom-quick-search-1');

    const done = await waitForSearch(env.cluster, ns, 'phantom-quick', 'Succeeded', (s) => ['Succeeded', 'Failed'].includes(s.status?.phase), 900_000);
    expect(done.status.phase, JSON.stringify(done.status, null, 1)).toBe('Succeeded');
    const st = done.status;
    expect(st.conditions.find((c: { type: string }) => c.type === 'Ready')).toMatchObject({ status: 'True' });
    expect(st.genotype.cells.length).toBe(example.spec.backbone.depth);
    expect(st.results.meanDice).toBeGreaterThan(0.5);
    expect(Object.keys(st.results.dicePerClass).sort()).toEqual(['LV', 'MYO', 'RV']);
    expect(st.results.hd95).toBeGreaterThan(0);

    // Cost: container run time times GPUs, from the pods as the API server holds them.
    const pods = await searchPods(env.cluster, ns, 'phantom-quick');
    expect(pods.map((p) => p.metadata.name)).toEqual([
      'phantom-quick-evaluate-1',
      'phantom-quick-prune-1',
      'phantom-quick-retrain-1',
      'phantom-quick-search-1',
    ]);
    expect(pods.every((p) => p.status.phase === 'Succeeded')).toBe(true);
    const prune = pods.find((p) => p.metadata.name.includes('-prune-'));
    expect(prune.spec.containers[0].resources.limits['nvidia.com/gpu']).toBeUndefined();
    const gpuSeconds = podGPUSeconds(pods);
    expect(gpuSeconds).toBeGreaterThan(0);
    expect(st.cost.gpuSeconds).toBeCloseTo(gpuSeconds, 0);
    expect(st.cost.estimatedUSD).toBeCloseTo((st.cost.gpuSeconds / 3600) * GPU_PRICE, 3);
    expect(st.phases.search.succeeded).toBe(true);
    expect(st.phases.evaluate.succeeded).toBe(true);

    // The operator's metrics agree with the status.
    const metrics = await (await fetch(`${operator.url}/metrics`)).text();
    const series = metrics
      .split('\n')
      .filter((l) => l.startsWith('iacsearch_gpu_seconds_total{') && l.includes('namespace="example"') && l.includes('name="phantom-quick"'));
    expect(series.length).toBeGreaterThan(0);
    expect(series.reduce((sum, l) => sum + Number(l.split(' ').pop()), 0)).toBeCloseTo(st.cost.gpuSeconds, 0);

    const table = await env.cluster.kubectl(['get', 'iacs', '-n', ns, 'phantom-quick']);
    const [header, row] = table.stdout.trimEnd().split('\n');
    const cols = header.split(/\s+/);
    // kubectl pads the columns; an empty cell is blanks, so cut the row at the header's offsets.
    const starts = cols.map((c) => header.indexOf(c));
    const cell = (name: string) => {
      const i = cols.indexOf(name);
      return row.slice(starts[i], i + 1 < starts.length ? starts[i + 1] : undefined).trim();
    };
    expect(cols).toEqual(['NAME', 'PHASE', 'EPOCH', 'STABLE', 'DICE', 'GPU-HOURS', 'COST', 'AGE']);
    expect(cell('PHASE')).toBe('Succeeded');
    expect(Number(cell('DICE'))).toBeCloseTo(st.results.meanDice, 2);
    expect(Number(cell('GPU-HOURS'))).toBeGreaterThan(0);
    expect(Number(cell('COST'))).toBeGreaterThan(0);
    expect(cell('EPOCH')).toMatch(/^\d+$/);
    expect(cell('STABLE')).toMatch(/^\d+\/\d+$/);

    // The trainer's progress events reached the operator from inside the pods.
    const log = readFileSync(operator.logFile, 'utf8');
    expect(log).toMatch(/"msg":"progress accepted","namespace":"example","name":"phantom-quick"/);
  }, 1_000_000);

  it("refuses progress reported from a pod with another search's token", async () => {
    // A second search whose pod can never be scheduled (no node has such a GPU; a node
    // selector key the operator's default pod policy allows): it has a progress Secret of its own.
    const quiet = tinySearch('quiet', ns, { spec: { resources: { nodeSelector: { 'nvidia.com/gpu.product': 'no-such-gpu' } } } });
    await env.cluster.client.create(iacsPath(ns), quiet);
    await waitFor(
      'progress Secrets',
      async () =>
        (await env.cluster.client.find(`/api/v1/namespaces/${ns}/secrets/quiet-progress`)) &&
        (await env.cluster.client.find(`/api/v1/namespaces/${ns}/secrets/phantom-quick-progress`)),
      60_000,
    );

    const script = `
      const post = (token, search) => fetch(process.env.URL, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer ' + token, 'x-iacsearch': search },
        body: JSON.stringify({ type: 'progress', phase: 'search', epoch: 1, maxEpochs: 3 }),
      }).then((r) => r.status);
      const out = {
        wrongToken: await post(process.env.OTHER_TOKEN, 'example/quiet'),
        noToken: await post('', 'example/quiet'),
        ownToken: await post(process.env.OWN_TOKEN, 'example/quiet'),
      };
      require('node:fs').writeFileSync(process.env.MSG, JSON.stringify(out));
    `;
    await env.cluster.client.create(`/api/v1/namespaces/${ns}/pods`, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'reporter' },
      spec: {
        restartPolicy: 'Never',
        containers: [
          {
            name: 'main',
            image: 'node:24',
            command: ['node', '-e', `(async () => { ${script} })()`],
            env: [
              { name: 'URL', value: `${operator.url}/v1/progress` },
              { name: 'MSG', value: '/dev/termination-log' },
              { name: 'OTHER_TOKEN', valueFrom: { secretKeyRef: { name: 'phantom-quick-progress', key: 'token' } } },
              { name: 'OWN_TOKEN', valueFrom: { secretKeyRef: { name: 'quiet-progress', key: 'token' } } },
            ],
          },
        ],
      },
    });
    const pod = await waitFor(
      'reporter pod finished',
      async () => {
        const p = await env.cluster.client.get(`/api/v1/namespaces/${ns}/pods/reporter`);
        return ['Succeeded', 'Failed'].includes(p.status?.phase) ? p : undefined;
      },
      60_000,
    );
    expect(pod.status.phase, env.kubelet!.logs(ns, 'reporter')).toBe('Succeeded');
    const codes = JSON.parse(pod.status.containerStatuses[0].state.terminated.message);
    expect(codes.wrongToken).toBe(401); // another search's token: checked only against this search's Secret
    expect(codes.noToken).toBe(401);
    expect(codes.ownToken).toBeGreaterThanOrEqual(200);
    expect(codes.ownToken).toBeLessThan(300);
  }, 120_000);
});
