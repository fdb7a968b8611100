// The chart and the kustomize base against a real API server (the test/cluster control
// plane): every rendered manifest is accepted by server-side dry-run, the installed RBAC
// gives the operator's service account what it needs and nothing more, and a committed
// IACSearch shows no drift after the API server applied the CRD's defaults (what Argo CD
// and Flux compare).
//
// ServiceMonitor and PrometheusRule are dry-run against minimal stand-ins of the
// Prometheus operator's CRDs (an open schema): the API server checks their kind, group,
// names and namespaces, not the Prometheus operator's own schema.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startCluster, waitFor, type Cluster } from '../cluster/control-plane.ts';
import { spawnGroup } from '../cluster/processes.ts';
import { clusterAvailability } from '../cluster/suite.ts';
import { repoRoot, requireTools, run } from './tools.ts';

const tools = requireTools('helm');
const cluster = clusterAvailability();
const skip = tools.skip || cluster.skip;
const chart = join(repoRoot, 'charts/iac-operator');
const NS = 'iac-system';
const everything = [
  'serviceMonitor.enabled=true',
  'prometheusRule.enabled=true',
  'grafanaDashboard.enabled=true',
  'networkPolicy.enabled=true',
  'networkPolicy.egress.enabled=true',
];

function helmTemplate(sets: string[], release = 'iac-operator'): string {
  const args = ['template', release, chart, '--namespace', NS, '--include-crds'];
  for (const s of sets) args.push('--set', s);
  const r = run(tools.paths.helm, args);
  if (r.status !== 0) throw new Error(`helm template failed: ${r.stderr}`);
  return r.stdout;
}

/** A minimal CRD standing in for one of the Prometheus operator's. */
const standInCRD = (kind: string, plural: string) => `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: ${plural}.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: { kind: ${kind}, plural: ${plural}, listKind: ${kind}List, singular: ${kind.toLowerCase()} }
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
`;

describe.skipIf(skip)('chart and kustomize base on a real API server', () => {
  let c: Cluster;
  let dir: string;
  const kubectl = async (args: string[], input?: string) => {
    const r = await c.kubectl(args, { input, allowFail: true, timeoutMs: 120_000 });
    return { ...r, out: r.stdout + r.stderr };
  };

  beforeAll(async () => {
    tools.assertPresent();
    if (cluster.reason) throw new Error(cluster.reason);
    c = await startCluster({ persistentVolumes: 0 });
    dir = mkdtempSync(join(tmpdir(), 'iac-packaging-'));
    for (const ns of [NS, 'team-a', 'team-b', 'elsewhere']) {
      await c.client.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    }
    const crds = standInCRD('ServiceMonitor', 'servicemonitors') + '---\n' + standInCRD('PrometheusRule', 'prometheusrules');
    const r = await kubectl(['apply', '--server-side', '-f', '-'], crds);
    expect(r.code, r.out).toBe(0);
    for (const plural of ['servicemonitors', 'prometheusrules']) {
      await waitFor(`${plural} served`, () => c.client.find(`/apis/monitoring.coreos.com/v1/${plural}`), 60_000);
    }
  }, 600_000);

  afterAll(async () => {
    await c?.stop();
    if (dir && process.env.IACNAS_KEEP_CLUSTER !== '1') rmSync(dir, { recursive: true, force: true });
  });

  it.each([
    ['default values', []],
    ['namespaced mode with every optional object', ['watchNamespaces={team-a,team-b}', ...everything]],
  ])('accepts every object of helm template (%s) in a server-side dry-run', async (_, sets) => {
    const manifests = helmTemplate(sets as string[]);
    const r = await kubectl(['apply', '--server-side', '--dry-run=server', '--field-manager=helm', '-f', '-'], manifests);
    expect(r.code, r.out).toBe(0);
    const kinds = r.stdout.split('\n').filter(Boolean);
    expect(kinds.length).toBeGreaterThanOrEqual(manifests.split('\n---').length - 1);
    expect(r.stdout).toContain('deployment.apps/iac-operator serverside-applied (server dry run)');
  });

  it.each(['deploy/kustomize/base', 'deploy/kustomize/monitoring'])('builds %s with kubectl kustomize and the server accepts it', async (path) => {
    const built = await kubectl(['kustomize', join(repoRoot, path)]);
    expect(built.code, built.out).toBe(0);
    expect(built.stdout).toContain('kind: CustomResourceDefinition');
    expect(built.stdout).toContain('namespace: iac-system');
    const r = await kubectl(['apply', '--server-side', '--dry-run=server', '-f', '-'], built.stdout);
    expect(r.code, r.out).toBe(0);
    expect(r.stdout).toContain('customresourcedefinition.apiextensions.k8s.io/iacsearches.nas.iac.dev');
  });

  describe('installed for real', () => {
    const sa = `system:serviceaccount:${NS}:iac-operator`;
    // "resource/sub" means a subresource here (kubectl reads "a/b" as resource a, name b).
    const can = async (verb: string, resource: string, ns?: string) => {
      const [res, sub] = resource.split('/');
      const r = await kubectl(['auth', 'can-i', verb, res, ...(sub ? [`--subresource=${sub}`] : []), `--as=${sa}`, ...(ns ? ['-n', ns] : ['--all-namespaces'])]);
      return r.stdout.trim() === 'yes';
    };

    beforeAll(async () => {
      const r = await kubectl(['apply', '--server-side', '--field-manager=helm', '-f', '-'], helmTemplate([]));
      expect(r.code, r.out).toBe(0);
      await waitFor('IACSearch served', () => c.client.find('/apis/nas.iac.dev/v1alpha1/iacsearches'), 60_000);
    }, 120_000);

    it('the operator may do its work in any namespace (cluster-wide mode)', async () => {
      for (const [verb, res] of [
        ['watch', 'iacsearches.nas.iac.dev'],
        ['patch', 'iacsearches.nas.iac.dev/status'],
        ['create', 'pods'],
        ['delete', 'pods'],
        ['create', 'secrets'],
        ['create', 'persistentvolumeclaims'],
        ['create', 'events.events.k8s.io'],
      ]) {
        expect(await can(verb, res, 'team-a'), `${verb} ${res}`).toBe(true);
      }
      expect(await can('update', 'leases.coordination.k8s.io', NS)).toBe(true);
    });

    it('the operator may not do anything else', async () => {
      expect(await can('update', 'leases.coordination.k8s.io', 'team-a')).toBe(false);
      expect(await can('update', 'pods/status', 'team-a')).toBe(false);
      expect(await can('get', 'nodes')).toBe(false);
      expect(await can('create', 'deployments.apps', 'team-a')).toBe(false);
      expect(await can('update', 'secrets', 'team-a')).toBe(false);
      expect(await can('create', 'pods/exec', 'team-a')).toBe(false);
      expect(await can('create', 'customresourcedefinitions.apiextensions.k8s.io')).toBe(false);
    });

    it('namespaced mode grants pods and secrets only in the watched namespaces', async () => {
      // A second release in namespaced mode, with its own service account.
      const manifests = helmTemplate(['watchNamespaces={team-b}', 'fullnameOverride=iac-ns']);
      const r = await kubectl(['apply', '--server-side', '--field-manager=helm', '-f', '-'], manifests);
      expect(r.code, r.out).toBe(0);
      const nsSA = `system:serviceaccount:${NS}:iac-ns`;
      const canNs = async (verb: string, res: string, ns: string) =>
        (await kubectl(['auth', 'can-i', verb, res, `--as=${nsSA}`, '-n', ns])).stdout.trim() === 'yes';
      expect(await canNs('create', 'pods', 'team-b')).toBe(true);
      expect(await canNs('get', 'secrets', 'team-b')).toBe(true);
      expect(await canNs('create', 'pods', 'elsewhere')).toBe(false);
      expect(await canNs('get', 'secrets', 'elsewhere')).toBe(false);
      expect(await canNs('update', 'leases.coordination.k8s.io', NS)).toBe(true);
    });

    it('a committed IACSearch shows no drift once the API server has defaulted it (GitOps)', async () => {
      const file = join(dir, 'search.yaml');
      writeFileSync(
        file,
        'apiVersion: nas.iac.dev/v1alpha1\nkind: IACSearch\nmetadata:\n  name: gitops-drift\n  namespace: team-a\nspec:\n  dataset:\n    format: phantom\n',
      );
      for (const mode of [['--server-side', '--field-manager=argocd-controller'], []]) {
        const applied = await kubectl(['apply', ...mode, '-f', file]);
        expect(applied.code, applied.out).toBe(0);
        // kubectl diff exits 0 when the live object matches what applying the file gives.
        const diff = await kubectl(['diff', ...mode, '-f', file]);
        expect(diff.code, diff.out).toBe(0);
      }
      const live = JSON.parse((await kubectl(['get', 'iacs', 'gitops-drift', '-n', 'team-a', '-o', 'json'])).stdout);
      // The defaults came from the CRD schema, not from anything the user committed.
      expect(live.spec.search).toBeDefined();
      expect(live.status ?? {}).not.toHaveProperty('phase');
    });

    /** Runs the operator with a service account's token, as in its pod, until `check` passes. */
    async function operatorAs(serviceAccount: string, extraArgs: string[], searchNS: string, name: string) {
      const token = (await kubectl(['create', 'token', serviceAccount, '-n', NS, '--duration=1h'])).stdout.trim();
      expect(token.length).toBeGreaterThan(20);
      const kubeconfig = join(dir, `${serviceAccount}.kubeconfig`);
      writeFileSync(
        kubeconfig,
        [
          'apiVersion: v1',
          'kind: Config',
          `clusters: [{ name: test, cluster: { server: "${c.server}", certificate-authority-data: ${readFileSync(c.certs.caCert).toString('base64')} } }]`,
          `users: [{ name: ${serviceAccount}, user: { token: ${token} } }]`,
          `contexts: [{ name: test, context: { cluster: test, user: ${serviceAccount} } }]`,
          'current-context: test',
          '',
        ].join('\n'),
      );
      const port = await freePort();
      const log = join(dir, `${serviceAccount}.log`);
      const op = spawnGroup(
        serviceAccount,
        process.execPath,
        [
          join(repoRoot, 'bin/iacnas.ts'),
          'operator',
          `--kubeconfig=${kubeconfig}`,
          '--host=127.0.0.1',
          `--port=${port}`,
          `--progress-url=http://127.0.0.1:${port}/v1/progress`,
          '--leader-elect',
          `--leader-election-namespace=${NS}`,
          `--leader-election-lease=${serviceAccount}-leader`,
          `--leader-election-identity=${serviceAccount}-0`,
          ...extraArgs,
        ],
        { logFile: log, cwd: repoRoot },
      );
      try {
        const file = join(dir, `${name}.yaml`);
        writeFileSync(file, `apiVersion: nas.iac.dev/v1alpha1\nkind: IACSearch\nmetadata:\n  name: ${name}\n  namespace: ${searchNS}\nspec:\n  dataset:\n    format: phantom\n`);
        const applied = await kubectl(['apply', '-f', file]);
        expect(applied.code, applied.out).toBe(0);
        const base = `/api/v1/namespaces/${searchNS}`;
        await waitFor(
          `${serviceAccount} to create the pod, Secret and claim of ${searchNS}/${name} and write its status`,
          async () => {
            const search = await c.client.get(`/apis/nas.iac.dev/v1alpha1/namespaces/${searchNS}/iacsearches/${name}`);
            return (
              search.status?.phase === 'Searching' &&
              (await c.client.find(`${base}/pods/${name}-search-1`)) &&
              (await c.client.find(`${base}/secrets/${name}-progress`)) &&
              (await c.client.find(`${base}/persistentvolumeclaims/${name}-artifacts`))
            );
          },
          90_000,
          500,
        );
        const lease = await c.client.get(`/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${serviceAccount}-leader`);
        expect(lease.spec.holderIdentity).toBe(`${serviceAccount}-0`);
        const events = await c.client.get(`/apis/events.k8s.io/v1/namespaces/${searchNS}/events`);
        expect(events.items.some((e: { regarding?: { name?: string } }) => e.regarding?.name === name)).toBe(true);
      } finally {
        await op.stop(5_000);
      }
      const text = readFileSync(log, 'utf8');
      expect(text).not.toMatch(/forbidden/i);
    }

    it('the operator does its work with the cluster-wide RBAC of the chart alone', async () => {
      await operatorAs('iac-operator', [], 'team-a', 'rbac-cluster');
    }, 180_000);

    it('the operator does its work with the namespaced RBAC alone', async () => {
      // The namespaced release (iac-ns, watching team-b) was installed by the test above.
      await operatorAs('iac-ns', ['--namespaces=team-b'], 'team-b', 'rbac-namespaced');
    }, 180_000);
  });
});
