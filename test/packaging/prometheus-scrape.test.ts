// A real Prometheus scrapes the real operator while it runs a search on the test cluster
// (test/cluster: kube-apiserver, etcd, controller-manager, scheduler, test kubelet running
// the real trainer), and then every dashboard query returns data and every alert rule
// evaluates without error. A stand-in OpenCost exporter serves node_gpu_hourly_cost so
// that the OpenCost join is exercised too.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startCluster, waitFor, type Cluster } from '../cluster/control-plane.ts';
import { spawnGroup, type ManagedProcess } from '../cluster/processes.ts';
import { clusterAvailability } from '../cluster/suite.ts';
import { TestKubelet } from '../cluster/test-kubelet.ts';
import { writePhantomDataset } from '../../trainer/src/data/check.ts';
import { argoHealth } from './argocd.ts';
import { dashboardQueries, fillGrafanaVariables, ruleQueries } from './promql.ts';
import { repoRoot, requireTools } from './tools.ts';

const tools = requireTools('prometheus', 'lua5.1');
const cluster = clusterAvailability();
const skip = tools.skip || cluster.skip;

const NS = 'scrape';
const SEARCH = 'scraped';
const SCRAPE = '1s';

// A tiny phantom search: a few epochs of every phase, on one (test-kubelet) GPU.
const search = {
  apiVersion: 'nas.iac.dev/v1alpha1',
  kind: 'IACSearch',
  metadata: { name: SEARCH, namespace: NS },
  spec: {
    dataset: { format: 'phantom', cases: 6, sliceSize: 16 },
    backbone: { depth: 2, baseFilters: 4, pretrainEpochs: 1 },
    search: { maxEpochs: 6, nodes: 2, batchSize: 4, stepsPerEpoch: 2, warmupEpochs: 1, stability: { threshold: 0.05, window: 2, patience: 1 } },
    retrain: { epochs: 2, stepsPerEpoch: 2 },
    resources: { gpus: 1, cpu: '1', memory: '2Gi' },
    cost: { gpuHourlyUSD: 2.5 },
    budget: { maxGPUHours: 100, maxCostUSD: 1000, action: 'Suspend' },
    artifacts: { size: '1Gi' },
  },
};

interface PromResponse {
  status: 'success' | 'error';
  error?: string;
  data: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> };
}

describe.skipIf(skip)('Prometheus scraping the operator during a search', () => {
  let c: Cluster;
  let operator: ManagedProcess;
  let prometheus: ManagedProcess;
  let opencost: Server;
  let promURL: string;
  let dir: string;

  const query = async (expr: string): Promise<PromResponse> => {
    const res = await fetch(`${promURL}/api/v1/query?query=${encodeURIComponent(expr)}`);
    return (await res.json()) as PromResponse;
  };
  const getSearch = () => c.client.get(`/apis/nas.iac.dev/v1alpha1/namespaces/${NS}/iacsearches/${SEARCH}`);

  beforeAll(async () => {
    tools.assertPresent();
    if (cluster.reason) throw new Error(cluster.reason);
    dir = mkdtempSync(join(tmpdir(), 'iac-scrape-'));
    c = await startCluster({ persistentVolumes: 2 });
    await c.kubectl(['apply', '--server-side', '-f', join(repoRoot, 'charts/iac-operator/crds/nas.iac.dev_iacsearches.yaml')]);
    // Served once discovery has it (kubectl wait fails while the CRD has no conditions yet).
    await waitFor('IACSearch served', () => c.client.find('/apis/nas.iac.dev/v1alpha1/iacsearches'), 60_000);
    await c.client.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
    await waitFor('default service account', () => c.client.find(`/api/v1/namespaces/${NS}/serviceaccounts/default`), 30_000);
    await TestKubelet.start(c, { nodes: [{ name: 'gpu-node', cpu: '8', memory: '32Gi', gpus: 2 }], envOverrides: { IACNAS_BACKEND: 'cpu' } });

    const opPort = await freePort();
    operator = spawnGroup(
      'operator',
      process.execPath,
      [
        join(repoRoot, 'bin/iacnas.ts'),
        'operator',
        `--kubeconfig=${c.kubeconfigPath}`,
        '--host=127.0.0.1',
        `--port=${opPort}`,
        `--progress-url=http://127.0.0.1:${opPort}/v1/progress`,
        '--leader-elect',
        '--leader-election-namespace=default',
        '--leader-election-identity=scrape-test',
        '--progress-interval=1s',
      ],
      { logFile: join(dir, 'operator.log'), cwd: repoRoot },
    );
    c.onStop(() => void operator.stop(5_000));
    await waitFor('operator ready', async () => (await fetch(`http://127.0.0.1:${opPort}/readyz`).catch(() => undefined))?.ok, 60_000);

    // A stand-in for OpenCost's exporter.
    const costPort = await freePort();
    opencost = createServer((_req, res) => {
      res.setHeader('content-type', 'text/plain; version=0.0.4');
      res.end('# TYPE node_gpu_hourly_cost gauge\nnode_gpu_hourly_cost{node="gpu-node",instance_type="test-gpu"} 3.1\n');
    });
    await new Promise<void>((r) => opencost.listen(costPort, '127.0.0.1', r));

    const promPort = await freePort();
    promURL = `http://127.0.0.1:${promPort}`;
    mkdirSync(join(dir, 'tsdb'));
    writeFileSync(
      join(dir, 'prometheus.yml'),
      [
        'global:',
        `  scrape_interval: ${SCRAPE}`,
        `  evaluation_interval: ${SCRAPE}`,
        'rule_files:',
        `  - ${join(repoRoot, 'deploy/prometheus/rules.yaml')}`,
        'scrape_configs:',
        '  - job_name: iac-operator',
        '    static_configs:',
        `      - targets: ["127.0.0.1:${opPort}"]`,
        '  - job_name: opencost',
        '    static_configs:',
        `      - targets: ["127.0.0.1:${costPort}"]`,
        '',
      ].join('\n'),
    );
    prometheus = spawnGroup(
      'prometheus',
      tools.paths.prometheus,
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'tsdb')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
        '--log.level=warn',
      ],
      { logFile: join(dir, 'prometheus.log') },
    );
    c.onStop(() => void prometheus.stop(5_000));
    await waitFor('prometheus ready', async () => (await fetch(`${promURL}/-/ready`).catch(() => undefined))?.ok, 60_000);

    // A second labelled dataset for the evaluate phase (the external-dataset panels): the
    // phantom with another seed, as NIfTI files.
    const external = join(dir, 'phantom-b');
    writePhantomDataset(external, 3, 11);
    const spec = { ...search.spec, evaluate: { baseline: true, external: [{ name: 'phantom-b', format: 'nnunet', path: external }] } };
    await c.client.create(`/apis/nas.iac.dev/v1alpha1/namespaces/${NS}/iacsearches`, { ...search, spec });
  }, 600_000);

  afterAll(async () => {
    opencost?.close();
    await c?.stop();
    if (dir && process.env.IACNAS_KEEP_CLUSTER !== '1') rmSync(dir, { recursive: true, force: true });
  });

  it('scrapes the operator while the search runs', async () => {
    await waitFor(
      'a search epoch in Prometheus',
      async () => {
        const r = await query(`iacsearch_search_epochs_total{name="${SEARCH}"} > 0`);
        return r.data.result.length > 0;
      },
      480_000,
      2_000,
    );
    const up = await query('up{job="iac-operator"}');
    expect(up.data.result.map((s) => s.value[1])).toEqual(['1']);
    const phase = await query(`iacsearch_phase{name="${SEARCH}"} == 1`);
    expect(phase.data.result).toHaveLength(1);
  }, 600_000);

  it('every dashboard query returns data and every alert rule evaluates once the search is done', async () => {
    const done = await waitFor(
      'search finished',
      async () => {
        const s = await getSearch();
        return ['Succeeded', 'Failed'].includes(s.status?.phase) ? s : undefined;
      },
      900_000,
      2_000,
    );
    expect(done.status.phase, `${JSON.stringify(done.status?.conditions)}\n${readFileSync(join(dir, 'operator.log'), 'utf8').slice(-3000)}`).toBe('Succeeded');
    // Let Prometheus see the final status: a few scrapes and enough for the rate windows.
    await waitFor(
      'finished attempts in Prometheus',
      async () => (await query(`iacsearch_gpu_seconds_total{name="${SEARCH}",phase="evaluate"}`)).data.result.length > 0,
      60_000,
      1_000,
    );
    await new Promise((r) => setTimeout(r, 5_000));

    const empty: string[] = [];
    for (const q of dashboardQueries()) {
      const r = await query(fillGrafanaVariables(q.expr, '1m'));
      expect(r.status, `${q.source}: ${r.error}`).toBe('success');
      // This search belongs to no IACSearchSet: the Fleets row only has to be valid PromQL here
      // (observability.test.ts checks its metrics and labels against the operator's exposition).
      if (r.data.result.length === 0 && !q.fleet) empty.push(`${q.source}: ${q.expr}`);
    }
    expect(empty).toEqual([]);

    for (const q of ruleQueries()) {
      const r = await query(q.expr);
      expect(r.status, `${q.source}: ${r.error}`).toBe('success');
    }
    const rules = (await (await fetch(`${promURL}/api/v1/rules`)).json()) as {
      data: { groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string }> }> };
    };
    const all = rules.data.groups.flatMap((g) => g.rules);
    expect(all.length).toBe(ruleQueries().length);
    expect(all.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`)).toEqual([]);
  }, 960_000);

  it('the figures agree with the search status', async () => {
    const s = await getSearch();
    const cost = await query(`sum(iacsearch_estimated_cost_usd_total{name="${SEARCH}"})`);
    // A counter never goes back: while an attempt ran, its cost was estimated up to the
    // operator's clock, which can pass the container's real finish by the kubelet's
    // reporting lag; the final status then records the real, slightly lower figure.
    const usd = Number(cost.data.result[0].value[1]);
    expect(usd).toBeGreaterThanOrEqual(s.status.cost.estimatedUSD - 1e-9);
    expect(usd).toBeLessThanOrEqual(s.status.cost.estimatedUSD * 1.1 + 1e-9);
    const gpu = await query(`sum({__name__=~"iacsearch_gpu_seconds_total|iacsearch_running_gpu_seconds", name="${SEARCH}"})`);
    expect(Number(gpu.data.result[0].value[1])).toBeCloseTo(s.status.cost.gpuSeconds, 3);
    const opencostUSD = await query(
      `sum({__name__=~"iacsearch_gpu_seconds_total|iacsearch_running_gpu_seconds", name="${SEARCH}"}) / 3600 * on () group_left () avg(node_gpu_hourly_cost)`,
    );
    expect(Number(opencostUSD.data.result[0].value[1])).toBeCloseTo((s.status.cost.gpuSeconds / 3600) * 3.1, 6);
  });

  it('the finished search satisfies kubectl wait --for=condition=Ready (kstatus, as Flux reads it)', async () => {
    const r = await c.kubectl(['wait', '--for=condition=Ready', `iacs/${SEARCH}`, '-n', NS, '--timeout=30s'], { allowFail: true });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const s = await getSearch();
    expect(s.status.observedGeneration).toBe(s.metadata.generation);
  });

  it('the Argo CD health check calls the finished search Healthy', async () => {
    const h = argoHealth(tools.paths['lua5.1'], await getSearch());
    expect(h.status).toBe('Healthy');
    expect(h.message).toMatch(/^Search succeeded/);
  });
});
