// The Helm chart, checked with the real helm (built by test/packaging/build-tools.sh):
// lint and template for the default values and with every optional object, and what the
// rendered objects must hold — a restricted pod, the optional objects. The RBAC of each
// mode (default, watchNamespaces, rbac.clusterWide): rbac.test.ts.
import { beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type RenderedObject, helmTemplate, repoRoot, requireTools, run } from './tools.ts';

const tools = requireTools('helm');
const chart = join(repoRoot, 'charts/iac-operator');

type Obj = RenderedObject;

const template = (sets: string[] = [], ns = 'iac-system'): Obj[] => helmTemplate(tools.paths.helm, sets, ns);
const templateFails = (sets: string[]) => {
  const args = ['template', 'iac-operator', chart];
  for (const s of sets) args.push('--set', s);
  return run(tools.paths.helm, args);
};
const one = (objs: Obj[], kind: string, name?: string) => {
  const found = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  expect(found, `${kind} ${name ?? ''}`).toHaveLength(1);
  return found[0];
};
type Rule = { apiGroups: string[]; resources: string[]; verbs: string[] };
/** The verbs a set of rules grants on group/resource. */
const verbsOn = (rules: Rule[], group: string, resource: string) =>
  new Set(rules.filter((r) => r.apiGroups.includes(group) && r.resources.includes(resource)).flatMap((r) => r.verbs));

const namespacedSets = ['watchNamespaces={team-a,team-b}'];
const everything = [
  'serviceMonitor.enabled=true',
  'serviceMonitor.labels.release=kube-prometheus-stack',
  'prometheusRule.enabled=true',
  'grafanaDashboard.enabled=true',
  'networkPolicy.enabled=true',
  'networkPolicy.egress.enabled=true',
  'networkPolicy.egress.apiServerCIDRs={10.96.0.1/32}',
];

describe.skipIf(tools.skip)('Helm chart charts/iac-operator', () => {
  beforeAll(() => tools.assertPresent());

  it.each([
    ['default values', []],
    ['namespaced mode with every optional object', [...namespacedSets, ...everything]],
    ['cluster-wide mode', ['rbac.clusterWide=true']],
  ])('passes helm lint --strict with %s', (_, sets) => {
    const args = ['lint', '--strict', chart];
    for (const s of sets as string[]) args.push('--set', s);
    const r = run(tools.paths.helm, args);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('0 chart(s) failed');
  });

  describe('default values', () => {
    let objs: Obj[];
    beforeAll(() => {
      objs = template();
    });

    it('renders the operator objects and none of the optional ones', () => {
      const kinds = objs.map((o) => o.kind).sort();
      expect(kinds).toEqual(
        // Namespaced RBAC in the release namespace; the two ClusterRoles are the aggregated user roles.
        ['ClusterRole', 'ClusterRole', 'Deployment', 'PodDisruptionBudget', 'Role', 'Role', 'RoleBinding', 'RoleBinding', 'Service', 'ServiceAccount'].sort(),
      );
      for (const o of objs) {
        expect(o.metadata.labels?.['app.kubernetes.io/name'], `${o.kind} ${o.metadata.name}`).toBe('iac-operator');
      }
    });

    it('runs two replicas with leader election, probes, requests and a restricted, read-only pod', () => {
      const d = one(objs, 'Deployment');
      expect(d.spec.replicas).toBe(2);
      expect(d.spec.strategy.rollingUpdate.maxUnavailable).toBe(0);
      const pod = d.spec.template.spec;
      expect(pod.serviceAccountName).toBe('iac-operator');
      expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
      const [c] = pod.containers;
      expect(c.args[0]).toBe('operator');
      expect(c.args).toEqual(
        expect.arrayContaining([
          '--leader-elect',
          '--leader-election-namespace=iac-system',
          '--leader-election-lease=iac-operator-leader',
          '--progress-url=http://iac-operator.iac-system.svc:8080/v1/progress',
          '--trainer-image=iac-operator/trainer-gpu:0.1.0',
          // Only the release namespace by default (docs/rbac.md).
          '--namespaces=iac-system',
        ]),
      );
      expect(c.image).toBe('iac-operator/operator:0.1.0');
      expect(c.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
      expect(c.resources.requests).toEqual({ cpu: '100m', memory: '192Mi' });
      expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
      expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' });
      expect(c.ports).toEqual([{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);
      // A writable /tmp is the only writable path.
      expect(c.volumeMounts).toEqual([{ name: 'tmp', mountPath: '/tmp' }]);
      expect(c.env.map((e: { name: string }) => e.name)).toEqual(['POD_NAME', 'POD_NAMESPACE', 'POD_IP', 'NODE_OPTIONS']);
      // V8 keeps the operator's memory flat: the old generation stays well below the limit.
      const nodeOptions = c.env.find((e: { name: string }) => e.name === 'NODE_OPTIONS').value as string;
      const oldSpaceMiB = Number(/--max-old-space-size=(\d+)/.exec(nodeOptions)?.[1]);
      expect(oldSpaceMiB).toBeGreaterThan(0);
      const limit = /^(\d+)(Mi|Gi)$/.exec(c.resources.limits.memory)!;
      expect(oldSpaceMiB).toBeLessThan(0.6 * Number(limit[1]) * (limit[2] === 'Gi' ? 1024 : 1));
      // The leader's address for standbys to forward progress to.
      expect(c.env.find((e: { name: string }) => e.name === 'POD_IP').valueFrom.fieldRef.fieldPath).toBe('status.podIP');
    });

    it('keeps one replica through voluntary disruptions and selects the operator pods only', () => {
      const pdb = one(objs, 'PodDisruptionBudget');
      const d = one(objs, 'Deployment');
      expect(pdb.spec.minAvailable).toBe(1);
      expect(pdb.spec.selector.matchLabels).toEqual(d.spec.selector.matchLabels);
      expect(one(objs, 'Service').spec.selector).toEqual(d.spec.selector.matchLabels);
    });

    it('lets the built-in edit and view roles use IACSearches', () => {
      const editor = one(objs, 'ClusterRole', 'iac-operator-iacsearch-editor');
      expect(editor.metadata.labels?.['rbac.authorization.k8s.io/aggregate-to-edit']).toBe('true');
      const viewer = one(objs, 'ClusterRole', 'iac-operator-iacsearch-viewer');
      expect(viewer.metadata.labels?.['rbac.authorization.k8s.io/aggregate-to-view']).toBe('true');
      expect(verbsOn(viewer.rules, 'nas.iac.dev', 'iacsearches')).toEqual(new Set(['get', 'list', 'watch']));
    });
  });

  describe('namespaced mode (watchNamespaces)', () => {
    let objs: Obj[];
    beforeAll(() => {
      objs = template([...namespacedSets, ...everything]);
    });

    it('passes the namespaces to the operator', () => {
      const c = one(objs, 'Deployment').spec.template.spec.containers[0];
      expect(c.args).toContain('--namespaces=team-a,team-b');
    });

    it('renders the ServiceMonitor with the configured selector labels on the http port', () => {
      const sm = one(objs, 'ServiceMonitor');
      expect(sm.metadata.labels?.release).toBe('kube-prometheus-stack');
      expect(sm.spec.endpoints).toEqual([expect.objectContaining({ port: 'http', path: '/metrics', interval: '30s' })]);
      expect(sm.spec.selector.matchLabels).toEqual(one(objs, 'Service').spec.selector);
    });

    it('renders the dashboard ConfigMap for the Grafana sidecar with the dashboard file', () => {
      const cm = one(objs, 'ConfigMap');
      expect(cm.metadata.labels?.grafana_dashboard).toBe('1');
      const file = readFileSync(join(repoRoot, 'deploy/grafana/iac-operator.json'), 'utf8');
      expect(JSON.parse(cm.data['iac-operator.json'])).toEqual(JSON.parse(file));
    });

    it('renders the PrometheusRule with the alerts of deploy/prometheus/rules.yaml', () => {
      const pr = one(objs, 'PrometheusRule');
      const names = pr.spec.groups.flatMap((g: { rules: Array<{ alert: string }> }) => g.rules.map((r) => r.alert));
      expect(names).toEqual(
        expect.arrayContaining([
          'IACSearchNoProgress',
          'IACSearchBudgetNearlySpent',
          'IACSearchBudgetExceeded',
          'IACSearchPhaseFailures',
          'IACOperatorDown',
          'IACOperatorNoLeader',
        ]),
      );
    });

    it('admits trainer pods and scrapers, and limits egress to DNS and the API server', () => {
      const np = one(objs, 'NetworkPolicy');
      expect(np.spec.policyTypes).toEqual(['Ingress', 'Egress']);
      expect(np.spec.ingress[0].from[0].podSelector.matchExpressions).toEqual([{ key: 'iac.dev/search', operator: 'Exists' }]);
      expect(np.spec.egress[1].to).toEqual([{ ipBlock: { cidr: '10.96.0.1/32' } }]);
    });
  });

  it('applies the values: prometheusRule thresholds, image digest, progress URL', () => {
    const objs = template([
      'prometheusRule.enabled=true',
      'prometheusRule.noProgressFor=3h',
      'prometheusRule.additionalLabels.team=vision',
      `image.digest=sha256:${'a'.repeat(64)}`,
      'progressURL=https://progress.example/v1/progress',
    ]);
    const rule = one(objs, 'PrometheusRule').spec.groups[0].rules.find((r: { alert: string }) => r.alert === 'IACSearchNoProgress');
    expect(rule.expr).toContain('increase(iacsearch_search_epochs_total[3h])');
    expect(rule.labels).toEqual({ severity: 'warning', team: 'vision' });
    const c = one(objs, 'Deployment').spec.template.spec.containers[0];
    expect(c.image).toBe(`iac-operator/operator@sha256:${'a'.repeat(64)}`);
    expect(c.args).toContain('--progress-url=https://progress.example/v1/progress');
  });

  it.each([
    [['replicas=2'], 'replicas'],
    [['logLevel=verbose'], 'logLevel'],
    [['replicaCount=-1'], 'replicaCount'],
    [['prometheusRule.budgetWarningRatio=2'], 'budgetWarningRatio'],
    [['serviceMonitor.interval=soon'], 'interval'],
    [['watchNamespaces={Team_A}'], 'watchNamespaces'],
    [['rbac.clusterWide=everywhere'], 'clusterWide'],
  ])('rejects bad values %j, naming the field', (sets, field) => {
    const r = templateFails(sets);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('values don');
    expect(r.stderr).toContain(field);
  });

  it('passes the operator only flags that `iacnas operator --help` documents', () => {
    const help = run(process.execPath, [join(repoRoot, 'bin/iacnas.ts'), 'operator', '--help']);
    expect(help.status, help.stderr).toBe(0);
    const known = new Set([...help.stdout.matchAll(/^\s+(--[a-z-]+)/gm)].map((m) => m[1]));
    expect(known.size).toBeGreaterThan(5);
    for (const sets of [[], ['watchNamespaces={a}', 'logLevel=debug']]) {
      const c = one(template(sets), 'Deployment').spec.template.spec.containers[0];
      expect(c.args[0]).toBe('operator');
      for (const arg of c.args.slice(1) as string[]) expect(known, arg).toContain(arg.split('=')[0]);
    }
  });

  it('refuses several replicas without leader election and says how to fix it', () => {
    const r = templateFails(['leaderElection.enabled=false']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('leaderElection.enabled=true');
    expect(template(['leaderElection.enabled=false', 'replicaCount=1']).some((o) => o.metadata.name.endsWith('leader-election'))).toBe(false);
  });
});
