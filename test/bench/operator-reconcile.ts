// Controller throughput on the in-memory API: N IACSearch objects created at once, the
// real reconcile, 2 workers. Reports the time until every search has its Secret, claim
// and search pod and a Searching status, reconciles per second, and one scrape of
// /metrics over all N searches.
//   scripts/with-node node test/bench/operator-reconcile.ts [N=500]
import { Controller } from '../../operator/src/controller/controller.ts';
import { FakeKubeApi } from '../../operator/testing/fake-kube-api.ts';
import { OperatorMetrics } from '../../operator/src/metrics/registry.ts';
import { reconcile } from '../../operator/src/reconcile/index.ts';

const n = Number(process.argv[2] ?? 500);
const api = new FakeKubeApi();
let ctl!: Controller;
const metrics = new OperatorMetrics({ searches: () => ctl.searches.list(), exportsSearchMetrics: () => true, queueDepth: () => ctl.queueDepth() });
let reconciles = 0;
ctl = new Controller({
  api,
  reconcile: (input) => {
    reconciles++;
    return reconcile(input);
  },
  settings: { defaultImage: 'trainer:bench', progressURL: 'http://op/v1/progress' },
  workers: 2,
  metrics,
});
ctl.startInformers();
ctl.startWorkers();
while (!ctl.hasSynced()) await new Promise((r) => setTimeout(r, 5));

const t0 = performance.now();
for (let i = 0; i < n; i++) {
  await api.create({
    apiVersion: 'nas.iac.dev/v1alpha1',
    kind: 'IACSearch',
    metadata: { name: `s${i}`, namespace: `ns${i % 10}` },
    spec: { dataset: { format: 'phantom' } },
  });
}
const done = () =>
  ctl.searches.list().filter((s) => (s.status as { phase?: string } | undefined)?.phase === 'Searching').length === n && ctl.pods.list().length === n;
while (!done()) await new Promise((r) => setTimeout(r, 10));
const seconds = (performance.now() - t0) / 1000;
const s0 = performance.now();
const text = await metrics.metrics();
const scrapeMs = performance.now() - s0;
await ctl.shutdown();
console.log(
  JSON.stringify({
    searches: n,
    secondsToSearching: +seconds.toFixed(2),
    reconciles,
    reconcilesPerSecond: Math.round(reconciles / seconds),
    statusWrites: api.callsOf('patchStatus').length,
    scrapeMs: +scrapeMs.toFixed(1),
    scrapeBytes: text.length,
  }),
);
