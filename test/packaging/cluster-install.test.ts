// The chart and the kustomize base against a real API server (the test/cluster control
// plane): every rendered manifest is accepted by server-side dry-run, the installed RBAC
// of each mode (default: the release namespace; watchNamespaces; rbac.clusterWide) gives
// the operator's service account what it needs where it watches and nothing more
// (`kubectl auth can-i`, and the operator running on nothing but that RBAC, with the
// OwnerReferencesPermissionEnforcement admission plugin on), and a committed
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
    // The admission plugin hardened clusters (OpenShift) enable: blockOwnerDeletion on a
    // child needs update on its owner's finalizers, which the chart grants.
    c = await startCluster({ persistentVolumes: 0, apiserverArgs: ['--enable-admission-plugins=OwnerReferencesPermissionEnforcement'] });
    dir = mkdtempSync(join(tmpdir(), 'iac-packaging-'));
    for (const ns of [NS, 'team-a', 'team-b', 'elsewhere', 'kube-system']) {
      if (await c.client.find(`/api/v1/namespaces/${ns}`)) continue;
      await c.client.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    }
    const crds = `${standInCRD('ServiceMonitor', 'servicemonitors')}---\n${standInCRD('PrometheusRule', 'prometheusrules')}`;
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
    ['cluster-wide mode', ['rbac.clusterWide=true']],
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
    // Three releases, one per mode, each with its own service account in iac-system:
    //   iac-operator  default values: the release namespace (iac-system) only
    //   iac-ns        watchNamespaces={team-b}
    //   iac-cw        rbac.clusterWide=true
    const releases: Record<string, string[]> = {
      'iac-operator': [],
      'iac-ns': ['watchNamespaces={team-b}', 'fullnameOverride=iac-ns'],
      'iac-cw': ['rbac.clusterWide=true', 'fullnameOverride=iac-cw'],
    };
    /** May the release's service account do this? "resource/sub" is a subresource; ns undefined: all namespaces. */
    const can = async (release: string, verb: string, resource: string, ns?: string, name?: string) => {
      const [res, sub] = resource.split('/');
      const r = await kubectl([
        'auth',
        'can-i',
        verb,
        name ? `${res}/${name}` : res,
        ...(sub ? [`--subresource=${sub}`] : []),
        `--as=system:serviceaccount:${NS}:${release}`,
        ...(ns ? ['-n', ns] : ['--all-namespaces']),
      ]);
      expect(r.stdout.trim(), r.out).toMatch(/^(yes|no)$/);
      return r.stdout.trim() === 'yes';
    };
    /** What the operator does in a namespace it watches (docs/rbac.md). */
    const work: Array<[string, string]> = [
      ['list', 'iacsearches.nas.iac.dev'],
      ['watch', 'iacsearches.nas.iac.dev'],
      ['delete', 'iacsearches.nas.iac.dev'],
      ['patch', 'iacsearches.nas.iac.dev/status'],
      ['update', 'iacsearches.nas.iac.dev/finalizers'],
      ['create', 'iacsearches.nas.iac.dev'],
      ['patch', 'iacsearches.nas.iac.dev'],
      ['list', 'iacsearchsets.nas.iac.dev'],
      ['watch', 'iacsearchsets.nas.iac.dev'],
      ['patch', 'iacsearchsets.nas.iac.dev/status'],
      ['update', 'iacsearchsets.nas.iac.dev/finalizers'],
      ['create', 'pods'],
      ['get', 'pods'],
      ['delete', 'pods'],
      ['list', 'secrets'],
      ['get', 'secrets'],
      ['create', 'secrets'],
      ['create', 'persistentvolumeclaims'],
      ['create', 'events.events.k8s.io'],
      ['patch', 'events.events.k8s.io'],
    ];
    /** Never, anywhere. */
    const never: Array<[string, string]> = [
      ['update', 'iacsearches.nas.iac.dev'],
      ['get', 'iacsearches.nas.iac.dev'],
      ['update', 'iacsearches.nas.iac.dev/status'],
      ['update', 'iacsearchsets.nas.iac.dev'],
      ['patch', 'iacsearchsets.nas.iac.dev'],
      ['create', 'iacsearchsets.nas.iac.dev'],
      ['delete', 'iacsearchsets.nas.iac.dev'],
      ['update', 'secrets'],
      ['delete', 'secrets'],
      ['delete', 'persistentvolumeclaims'],
      ['update', 'pods/status'],
      ['create', 'pods/exec'],
      ['get', 'pods/log'],
      ['create', 'deployments.apps'],
      ['get', 'configmaps'],
      ['create', 'serviceaccounts/token'],
    ];

    beforeAll(async () => {
      for (const sets of Object.values(releases)) {
        const r = await kubectl(['apply', '--server-side', '--field-manager=helm', '-f', '-'], helmTemplate(sets));
        expect(r.code, r.out).toBe(0);
      }
      await waitFor('IACSearch served', () => c.client.find('/apis/nas.iac.dev/v1alpha1/iacsearches'), 60_000);
    }, 120_000);

    it('default values: the operator may do its work in the release namespace and nowhere else', async () => {
      for (const [verb, res] of work) expect(await can('iac-operator', verb, res, NS), `${verb} ${res} in ${NS}`).toBe(true);
      for (const ns of ['kube-system', 'default', 'team-a', 'elsewhere']) {
        for (const [verb, res] of [
          ['get', 'secrets'],
          ['list', 'secrets'],
          ['create', 'pods'],
          ['list', 'pods'],
          ['list', 'iacsearches.nas.iac.dev'],
        ]) {
          expect(await can('iac-operator', verb, res, ns), `${verb} ${res} in ${ns}`).toBe(false);
        }
      }
      expect(await can('iac-operator', 'list', 'secrets')).toBe(false);
      expect(await can('iac-operator', 'list', 'iacsearches.nas.iac.dev')).toBe(false);
    });

    it('watchNamespaces: only in the listed namespaces, not even in the release namespace', async () => {
      for (const [verb, res] of work) expect(await can('iac-ns', verb, res, 'team-b'), `${verb} ${res} in team-b`).toBe(true);
      for (const ns of [NS, 'kube-system', 'team-a', 'elsewhere']) {
        expect(await can('iac-ns', 'get', 'secrets', ns), `get secrets in ${ns}`).toBe(false);
        expect(await can('iac-ns', 'create', 'pods', ns), `create pods in ${ns}`).toBe(false);
      }
    });

    it('rbac.clusterWide=true: everywhere, kube-system included (why it must be chosen explicitly)', async () => {
      for (const ns of ['team-a', 'elsewhere', 'kube-system']) {
        for (const [verb, res] of work) expect(await can('iac-cw', verb, res, ns), `${verb} ${res} in ${ns}`).toBe(true);
      }
      expect(await can('iac-cw', 'list', 'secrets')).toBe(true);
    });

    it('no mode lets the operator update IACSearch specs or do anything else', async () => {
      for (const [release, ns] of [
        ['iac-operator', NS],
        ['iac-ns', 'team-b'],
        ['iac-cw', 'team-a'],
      ]) {
        for (const [verb, res] of never) expect(await can(release, verb, res, ns), `${release}: ${verb} ${res} in ${ns}`).toBe(false);
        expect(await can(release, 'get', 'nodes'), `${release}: get nodes`).toBe(false);
        expect(await can(release, 'create', 'customresourcedefinitions.apiextensions.k8s.io'), `${release}: create CRDs`).toBe(false);
        expect(await can(release, 'create', 'clusterrolebindings.rbac.authorization.k8s.io'), `${release}: bind roles`).toBe(false);
        // Its own Lease in the release namespace, no other.
        expect(await can(release, 'update', 'leases.coordination.k8s.io', NS, `${release}-leader`), `${release}: update its lease`).toBe(true);
        expect(await can(release, 'create', 'leases.coordination.k8s.io', NS), `${release}: create its lease`).toBe(true);
        expect(await can(release, 'update', 'leases.coordination.k8s.io', NS, 'other-leader'), `${release}: update another lease`).toBe(false);
        expect(await can(release, 'update', 'leases.coordination.k8s.io', 'team-a', `${release}-leader`), `${release}: lease elsewhere`).toBe(false);
      }
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

    /**
     * Runs the operator with a release's service account token, as in its pod, and with the
     * --namespaces its chart Deployment passes: it must create a search's children, write
     * its status, record events, hold its Lease and delete the pod on suspend, and never be
     * refused.
     */
    async function operatorAs(serviceAccount: string, searchNS: string, name: string) {
      const deployment = helmTemplate(releases[serviceAccount])
        .split(/^---$/m)
        .find((d) => /^kind: Deployment$/m.test(d))!;
      const extraArgs = [...deployment.matchAll(/^\s+- (--namespaces=\S+)$/gm)].map((m) => m[1]);
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
        writeFileSync(
          file,
          `apiVersion: nas.iac.dev/v1alpha1\nkind: IACSearch\nmetadata:\n  name: ${name}\n  namespace: ${searchNS}\nspec:\n  dataset:\n    format: phantom\n`,
        );
        const applied = await kubectl(['apply', '-f', file]);
        expect(applied.code, applied.out).toBe(0);
        const base = `/api/v1/namespaces/${searchNS}`;
        /** The operator's log lines about requests the API server refused ('' while none): a wait ends at the first. */
        const refusals = () =>
          readFileSync(log, 'utf8')
            .split('\n')
            .filter((l) => /forbidden/i.test(l))
            .slice(0, 5)
            .join('\n');
        await waitFor(
          `${serviceAccount} to create the pod, Secret and claim of ${searchNS}/${name} and write its status`,
          async () => {
            if (refusals()) return true;
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
        expect(refusals(), `${serviceAccount} was refused`).toBe('');
        const lease = await c.client.get(`/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${serviceAccount}-leader`);
        expect(lease.spec.holderIdentity).toBe(`${serviceAccount}-0`);
        // Suspend: the operator deletes the pod (the IACSearch's spec is the user's to write).
        await c.client.mergePatch(`/apis/nas.iac.dev/v1alpha1/namespaces/${searchNS}/iacsearches/${name}`, { spec: { suspend: true } });
        await waitFor(
          `${serviceAccount} to delete the pod of ${searchNS}/${name} on suspend`,
          async () =>
            !!refusals() ||
            ((await c.client.get(`/apis/nas.iac.dev/v1alpha1/namespaces/${searchNS}/iacsearches/${name}`)).status?.phase === 'Suspended' &&
              !(await c.client.find(`${base}/pods/${name}-search-1`))),
          90_000,
          500,
        );
        // The Suspended event: the operator may record events where it works.
        await waitFor(
          `${serviceAccount}'s Suspended event about ${searchNS}/${name}`,
          async () =>
            !!refusals() ||
            (await c.client.get(`/apis/events.k8s.io/v1/namespaces/${searchNS}/events`)).items.some(
              (e: { regarding?: { name?: string }; reason?: string }) => e.regarding?.name === name && e.reason === 'Suspended',
            ),
          60_000,
          500,
        );
      } finally {
        await op.stop(5_000);
      }
      const text = readFileSync(log, 'utf8');
      expect(text).not.toMatch(/forbidden/i);
    }

    it('the operator does its work with the default RBAC alone (its own namespace)', async () => {
      await operatorAs('iac-operator', NS, 'rbac-default');
    }, 180_000);

    it('the operator does its work with the watchNamespaces RBAC alone', async () => {
      await operatorAs('iac-ns', 'team-b', 'rbac-namespaced');
    }, 180_000);

    it('the operator does its work with the cluster-wide RBAC alone', async () => {
      await operatorAs('iac-cw', 'team-a', 'rbac-cluster');
    }, 180_000);
  });
});
