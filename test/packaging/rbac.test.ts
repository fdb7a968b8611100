// The operator's RBAC: which objects and verbs the chart grants in each mode (default:
// the release namespace; watchNamespaces; rbac.clusterWide), that docs/rbac.md and the
// chart README list the same rules, and that they are exactly the calls the operator
// makes: the real operator (startOperator, with the arguments the chart's Deployment
// passes) runs searches through create, conflicts, suspend, resume, failure,
// ttlSecondsAfterFinished and lease release on the in-memory API, and every call it makes
// is checked against the rendered Roles and bindings. The same RBAC against a real API
// server: cluster-install.test.ts.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { createLogger } from '../../operator/src/controller/log.ts';
import { FakeKubeApi } from '../../operator/testing/fake-kube-api.ts';
import { IACSearchSetType, IACSearchType, PodType, resourceTypeOf } from '../../operator/src/k8s/resources.ts';
import {
  ApiError,
  type KubeApi,
  type KubeObject,
  type ListOptions,
  type ResourceType,
  type WatchEventType,
  type WatchOptions,
} from '../../operator/src/k8s/types.ts';
import { parseOperatorArgs, startOperator, type RunningOperator } from '../../operator/src/main.ts';
import { setPodState } from '../../operator/testing/world.ts';
import { helmTemplate, repoRoot, requireTools, run } from './tools.ts';

const tools = requireTools('helm');
const chart = join(repoRoot, 'charts/iac-operator');
const NS = 'iac-system';
const SA = { name: 'iac-operator', namespace: NS };

type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };
type Obj = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  rules?: Rule[];
  // biome-ignore lint/suspicious/noExplicitAny: rendered manifests are read by path; each test reads the fields it checks
  [k: string]: any;
};

const template = (sets: string[] = []): Obj[] => helmTemplate(tools.paths.helm, sets, NS);
const rbacKinds = new Set(['Role', 'RoleBinding', 'ClusterRole', 'ClusterRoleBinding']);
const operatorArgs = (objs: Obj[]): string[] => objs.find((o) => o.kind === 'Deployment')!.spec.template.spec.containers[0].args;
const byKind = (objs: Obj[], kind: string) => objs.filter((o) => o.kind === kind);
/** "group|resource|verb" for every grant of the rules (resource may be "res/sub"). */
const grants = (rules: Rule[]) =>
  new Set(rules.flatMap((r) => r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${g}|${res}|${v}`)))));

/** One API request, as the authorizer sees it. namespace undefined: all namespaces (list/watch) or cluster-scoped. */
interface Request {
  verb: string;
  group: string;
  resource: string;
  namespace?: string;
  name?: string;
}
const describeRequest = (q: Request) => `${q.verb} ${q.group || 'core'}/${q.resource}${q.name ? `/${q.name}` : ''} in ${q.namespace ?? 'all namespaces'}`;

/** The RBAC authorizer, for the rendered objects: may the service account make this request? */
function allowed(objs: Obj[], sa: { name: string; namespace: string }, q: Request): boolean {
  const boundToSA = (b: Obj) =>
    (b.subjects ?? []).some(
      (s: { kind: string; name: string; namespace?: string }) => s.kind === 'ServiceAccount' && s.name === sa.name && s.namespace === sa.namespace,
    );
  const role = (kind: string, name: string, namespace?: string) =>
    objs.find((o) => o.kind === kind && o.metadata.name === name && (kind === 'ClusterRole' || o.metadata.namespace === namespace));
  const rules: Rule[] = [];
  for (const b of objs.filter((o) => o.kind === 'ClusterRoleBinding' && boundToSA(o))) rules.push(...(role('ClusterRole', b.roleRef.name)?.rules ?? []));
  if (q.namespace !== undefined) {
    for (const b of objs.filter((o) => o.kind === 'RoleBinding' && o.metadata.namespace === q.namespace && boundToSA(o))) {
      rules.push(...(role(b.roleRef.kind, b.roleRef.name, q.namespace)?.rules ?? []));
    }
  }
  return rules.some(
    (r) =>
      (r.apiGroups.includes(q.group) || r.apiGroups.includes('*')) &&
      (r.resources.includes(q.resource) || r.resources.includes('*')) &&
      (r.verbs.includes(q.verb) || r.verbs.includes('*')) &&
      (!r.resourceNames?.length || (q.name !== undefined && r.resourceNames.includes(q.name))),
  );
}

/** The rules of the markdown tables in `section` of a file: one per table, as "group|resource|verb" sets. */
function docTables(file: string, section: string): Array<Set<string>> {
  const text = readFileSync(join(repoRoot, file), 'utf8');
  const start = text.indexOf(section);
  expect(start, `${file} has the section ${section}`).toBeGreaterThanOrEqual(0);
  const body = text.slice(start + section.length).split(/\n## /)[0];
  const tables: Array<Set<string>> = [];
  let current: Set<string> | undefined;
  for (const line of body.split('\n')) {
    const cells = line.startsWith('|')
      ? line
          .split('|')
          .slice(1, -1)
          .map((c) => c.trim())
      : undefined;
    if (!cells || cells.length < 3 || cells[0] === 'API group' || /^-+$/.test(cells[0])) {
      if (!cells) current = undefined;
      continue;
    }
    if (!current) {
      current = new Set();
      tables.push(current);
    }
    const group = cells[0] === 'core' ? '' : cells[0].replace(/`/g, '');
    const resource = /`([^`]+)`/.exec(cells[1])![1];
    for (const m of cells[2].matchAll(/`([^`]+)`/g)) current.add(`${group}|${resource}|${m[1]}`);
  }
  return tables;
}

/** What the operator needs on the searches and their children (docs/rbac.md, templates/_rbac.tpl). */
const SEARCH_GRANTS = new Set([
  'nas.iac.dev|iacsearches|list',
  'nas.iac.dev|iacsearches|watch',
  'nas.iac.dev|iacsearches|delete',
  'nas.iac.dev|iacsearches/status|patch',
  'nas.iac.dev|iacsearches/finalizers|update',
  // An IACSearchSet's children: created, patched (suspend, an orphan's label and owner), deleted.
  'nas.iac.dev|iacsearches|create',
  'nas.iac.dev|iacsearches|patch',
  'nas.iac.dev|iacsearchsets|list',
  'nas.iac.dev|iacsearchsets|watch',
  'nas.iac.dev|iacsearchsets/status|patch',
  'nas.iac.dev|iacsearchsets/finalizers|update',
  ...['get', 'list', 'watch', 'create', 'delete'].map((v) => `|pods|${v}`),
  ...['get', 'list', 'watch', 'create'].map((v) => `|secrets|${v}`),
  ...['get', 'list', 'watch', 'create'].map((v) => `|persistentvolumeclaims|${v}`),
  'events.k8s.io|events|create',
  'events.k8s.io|events|patch',
]);
const LEASE_GRANTS = new Set(['coordination.k8s.io|leases|get', 'coordination.k8s.io|leases|update', 'coordination.k8s.io|leases|create']);

describe.skipIf(tools.skip)("the operator's RBAC in the Helm chart", () => {
  beforeAll(() => tools.assertPresent());

  describe('default values: the release namespace only', () => {
    let objs: Obj[];
    beforeAll(() => {
      objs = template();
    });

    it('watches the release namespace, with a Role there and nothing cluster-wide', () => {
      expect(operatorArgs(objs)).toContain(`--namespaces=${NS}`);
      expect(byKind(objs, 'ClusterRoleBinding')).toEqual([]);
      const roles = byKind(objs, 'Role');
      expect(roles.map((r) => `${r.metadata.namespace}/${r.metadata.name}`).sort()).toEqual([`${NS}/iac-operator`, `${NS}/iac-operator-leader-election`]);
      expect(grants(roles.find((r) => r.metadata.name === 'iac-operator')!.rules!)).toEqual(SEARCH_GRANTS);
      const binding = byKind(objs, 'RoleBinding').find((b) => b.metadata.name === 'iac-operator')!;
      expect(binding.metadata.namespace).toBe(NS);
      expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'iac-operator' });
      expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', ...SA }]);
    });

    it('gives the operator nothing in kube-system or any other namespace', () => {
      for (const [verb, resource] of [
        ['get', 'secrets'],
        ['list', 'secrets'],
        ['create', 'pods'],
        ['list', 'pods'],
        ['list', 'iacsearches'],
      ]) {
        const group = resource === 'iacsearches' ? 'nas.iac.dev' : '';
        expect(allowed(objs, SA, { verb, group, resource, namespace: NS }), `${verb} ${resource} in ${NS}`).toBe(true);
        for (const ns of ['kube-system', 'default', 'team-a', undefined]) {
          expect(allowed(objs, SA, { verb, group, resource, namespace: ns }), `${verb} ${resource} in ${ns ?? 'all namespaces'}`).toBe(false);
        }
      }
    });

    it('binds the aggregated user roles to nobody and gives them no pods or Secrets', () => {
      for (const cr of byKind(objs, 'ClusterRole')) {
        expect(cr.metadata.name).toMatch(/-iacsearch-(editor|viewer)$/);
        expect(cr.metadata.labels?.['rbac.authorization.k8s.io/aggregate-to-edit'] ?? cr.metadata.labels?.['rbac.authorization.k8s.io/aggregate-to-view']).toBe(
          'true',
        );
        expect(
          [...grants(cr.rules!)].every((g) => g.startsWith('nas.iac.dev|')),
          cr.metadata.name,
        ).toBe(true);
      }
    });

    it('limits leader election to the one Lease in the release namespace', () => {
      const lease = byKind(objs, 'Role').find((r) => r.metadata.name === 'iac-operator-leader-election')!;
      expect(lease.metadata.namespace).toBe(NS);
      expect(grants(lease.rules!)).toEqual(LEASE_GRANTS);
      const named = lease.rules!.find((r) => r.verbs.includes('update'))!;
      expect(named.resourceNames).toEqual(['iac-operator-leader']);
      expect(named.verbs.sort()).toEqual(['get', 'update']);
      expect(operatorArgs(objs)).toContain('--leader-election-lease=iac-operator-leader');
      const lq = (verb: string, name: string | undefined, namespace = NS): Request => ({
        verb,
        group: 'coordination.k8s.io',
        resource: 'leases',
        namespace,
        name,
      });
      expect(allowed(objs, SA, lq('update', 'iac-operator-leader'))).toBe(true);
      expect(allowed(objs, SA, lq('update', 'kube-controller-manager'))).toBe(false);
      expect(allowed(objs, SA, lq('create', undefined))).toBe(true);
      expect(allowed(objs, SA, lq('update', 'iac-operator-leader', 'kube-system'))).toBe(false);
      expect(allowed(objs, SA, lq('list', undefined))).toBe(false);
    });
  });

  it('watchNamespaces: a Role in each listed namespace, none elsewhere, the same list in --namespaces', () => {
    const objs = template(['watchNamespaces={team-a,team-b}']);
    expect(operatorArgs(objs)).toContain('--namespaces=team-a,team-b');
    expect(byKind(objs, 'ClusterRoleBinding')).toEqual([]);
    const searchRoles = byKind(objs, 'Role').filter((r) => r.metadata.name === 'iac-operator');
    expect(searchRoles.map((r) => r.metadata.namespace).sort()).toEqual(['team-a', 'team-b']);
    for (const r of searchRoles) expect(grants(r.rules!)).toEqual(SEARCH_GRANTS);
    expect(
      byKind(objs, 'RoleBinding')
        .map((b) => `${b.metadata.namespace}/${b.roleRef.name}`)
        .sort(),
    ).toEqual([`${NS}/iac-operator-leader-election`, 'team-a/iac-operator', 'team-b/iac-operator']);
    expect(allowed(objs, SA, { verb: 'get', group: '', resource: 'secrets', namespace: 'team-b' })).toBe(true);
    for (const ns of [NS, 'kube-system', 'elsewhere']) {
      expect(allowed(objs, SA, { verb: 'get', group: '', resource: 'secrets', namespace: ns }), ns).toBe(false);
    }
  });

  it('rbac.clusterWide=true: one ClusterRole with the same rules, bound cluster-wide, and no --namespaces', () => {
    const objs = template(['rbac.clusterWide=true']);
    expect(operatorArgs(objs).some((a) => a.startsWith('--namespaces'))).toBe(false);
    const role = byKind(objs, 'ClusterRole').find((r) => r.metadata.name === 'iac-operator')!;
    expect(grants(role.rules!)).toEqual(SEARCH_GRANTS);
    const [binding] = byKind(objs, 'ClusterRoleBinding');
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'iac-operator' });
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', ...SA }]);
    expect(byKind(objs, 'Role').map((r) => r.metadata.name)).toEqual(['iac-operator-leader-election']);
    // What this mode costs: Secrets everywhere, kube-system's included.
    expect(allowed(objs, SA, { verb: 'get', group: '', resource: 'secrets', namespace: 'kube-system' })).toBe(true);
    expect(allowed(objs, SA, { verb: 'list', group: '', resource: 'secrets' })).toBe(true);
  });

  it('never lets the operator update an IACSearch or write an IACSearchSet but its status, nor use wildcards, in any mode', () => {
    for (const sets of [[], ['watchNamespaces={a}'], ['rbac.clusterWide=true']]) {
      const objs = template(sets);
      const namespace = sets.length ? 'a' : NS;
      for (const verb of ['get', 'update', 'deletecollection']) {
        expect(allowed(objs, SA, { verb, group: 'nas.iac.dev', resource: 'iacsearches', namespace, name: 'x' }), `${verb} ${sets}`).toBe(false);
      }
      for (const verb of ['get', 'update', 'patch', 'create', 'delete', 'deletecollection']) {
        expect(allowed(objs, SA, { verb, group: 'nas.iac.dev', resource: 'iacsearchsets', namespace, name: 'x' }), `${verb} sets ${sets}`).toBe(false);
      }
      expect(allowed(objs, SA, { verb: 'update', group: 'nas.iac.dev', resource: 'iacsearches/status', namespace: sets.length ? 'a' : NS, name: 'x' })).toBe(
        false,
      );
      for (const o of objs.filter((x) => rbacKinds.has(x.kind) && x.rules)) {
        for (const r of o.rules!) expect([...r.apiGroups, ...r.resources, ...r.verbs], o.metadata.name).not.toContain('*');
      }
    }
  });

  it('refuses rbac.clusterWide=true together with watchNamespaces, saying to choose one', () => {
    const r = run(tools.paths.helm, ['template', 'iac-operator', chart, '--set', 'rbac.clusterWide=true', '--set', 'watchNamespaces={a}']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('rbac.clusterWide=true');
    expect(r.stderr).toContain('watchNamespaces must be empty');
  });

  it('rbac.create=false renders no RBAC but still restricts the operator to its namespaces', () => {
    const objs = template(['rbac.create=false']);
    expect(objs.filter((o) => rbacKinds.has(o.kind))).toEqual([]);
    expect(operatorArgs(objs)).toContain(`--namespaces=${NS}`);
  });

  it('docs/rbac.md and the chart README list exactly the rules the chart renders', () => {
    const [search, lease, ...more] = docTables('docs/rbac.md', '## What the operator may do');
    expect(more).toEqual([]);
    expect(search).toEqual(SEARCH_GRANTS);
    expect(lease).toEqual(LEASE_GRANTS);
    const readme = docTables('charts/iac-operator/README.md', "## The operator's permissions");
    expect(readme).toEqual([SEARCH_GRANTS, LEASE_GRANTS]);
  });
});

/** A KubeApi that records every request the operator makes, as the authorizer sees it. */
class RecordingApi implements KubeApi {
  readonly requests: Request[] = [];
  private readonly api: KubeApi;
  constructor(api: KubeApi) {
    this.api = api;
  }
  private rec(verb: string, type: ResourceType, namespace: string | undefined, name?: string, sub?: string) {
    const group = type.apiVersion.includes('/') ? type.apiVersion.split('/')[0] : '';
    this.requests.push({ verb, group, resource: sub ? `${type.plural}/${sub}` : type.plural, namespace, name });
  }
  list(type: ResourceType, opts: ListOptions = {}) {
    this.rec('list', type, opts.namespace);
    return this.api.list(type, opts);
  }
  watch(type: ResourceType, opts: WatchOptions, onEvent: (t: WatchEventType, o: KubeObject) => void, onClose: (err?: unknown) => void) {
    this.rec('watch', type, opts.namespace);
    return this.api.watch(type, opts, onEvent, onClose);
  }
  get(type: ResourceType, namespace: string | undefined, name: string) {
    this.rec('get', type, namespace, name);
    return this.api.get(type, namespace, name);
  }
  create(object: KubeObject) {
    this.rec('create', resourceTypeOf(object.kind), object.metadata.namespace);
    return this.api.create(object);
  }
  replace(object: KubeObject) {
    this.rec('update', resourceTypeOf(object.kind), object.metadata.namespace, object.metadata.name);
    return this.api.replace(object);
  }
  delete(type: ResourceType, namespace: string | undefined, name: string) {
    this.rec('delete', type, namespace, name);
    return this.api.delete(type, namespace, name);
  }
  mergePatch(type: ResourceType, namespace: string | undefined, name: string, patch: Record<string, unknown>) {
    this.rec('patch', type, namespace, name);
    return this.api.mergePatch(type, namespace, name, patch);
  }
  mergePatchStatus(type: ResourceType, namespace: string | undefined, name: string, patch: Record<string, unknown>) {
    this.rec('patch', type, namespace, name, 'status');
    return this.api.mergePatchStatus(type, namespace, name, patch);
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Polls a condition of the in-memory API (each step waits on the operator's own reaction). */
async function until(what: string, cond: () => boolean, timeoutMs = 120_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.skipIf(tools.skip)('the calls the operator makes are exactly what the chart grants', () => {
  let op: RunningOperator | undefined;
  afterEach(async () => {
    await op?.stop();
    op = undefined;
  });

  it.each([
    ['watchNamespaces={lab}', 'lab', 'elsewhere'],
    ['rbac.clusterWide=true', 'lab', undefined],
  ])(
    'with %s',
    async (set, ns, unwatched) => {
      const objs = template([set]);
      const fake = new FakeKubeApi();
      const api = new RecordingApi(fake);
      const logs: string[] = [];
      const port = await freePort();
      // The chart's own arguments; only where to listen and who this replica is differ.
      const cfg = parseOperatorArgs([...operatorArgs(objs).slice(1), '--host=127.0.0.1', `--port=${port}`, '--leader-election-identity=op-0'], {});
      if (cfg === 'help') throw new Error('unexpected --help');
      const search = (name: string, namespace: string, spec: Record<string, unknown> = {}): KubeObject => ({
        apiVersion: 'nas.iac.dev/v1alpha1',
        kind: 'IACSearch',
        metadata: { name, namespace },
        spec: { dataset: { format: 'phantom' }, ...spec },
      });
      const phase = (name: string, namespace = ns) =>
        (fake.objects('IACSearch', namespace).find((s) => s.metadata.name === name)?.status as { phase?: string } | undefined)?.phase;
      const pod = (name: string) => fake.objects('Pod', ns).find((p) => p.metadata.name === name);
      const setSuspend = async (suspend: boolean) => {
        await fake.mergePatch(IACSearchType, ns, 'a', { spec: { suspend } });
      };

      // Conflicts, so the read-back of an existing child is exercised: an unlabelled claim and
      // Secret of the same names exist already, and a.'s first pod create answers 409.
      for (const [kind, name] of [
        ['PersistentVolumeClaim', 'a-artifacts'],
        ['Secret', 'b-progress'],
      ]) {
        fake.seed({ apiVersion: 'v1', kind, metadata: { name, namespace: ns }, ...(kind === 'Secret' ? { data: {} } : { spec: {} }) });
      }
      fake.failNext('create', new ApiError(409, 'pods "a-search-1" already exists', 'AlreadyExists'), { kind: 'Pod' });
      await fake.create(search('a', ns, { ttlSecondsAfterFinished: 1, backoffLimit: 0 }));
      await fake.create(search('b', ns));
      if (unwatched) await fake.create(search('c', unwatched));

      op = await startOperator(cfg, api, createLogger({ level: 'debug', write: (line) => logs.push(line) }));
      try {
        await until('the first pods', () => !!pod('a-search-1') && !!pod('b-search-1'));
        // Suspend twice (the second Suspended event patches the first one's series), resume.
        for (const attempt of [1, 2]) {
          await setSuspend(true);
          await until(`a suspended, pod a-search-${attempt} deleted`, () => phase('a') === 'Suspended' && !pod(`a-search-${attempt}`));
          await setSuspend(false);
          await until(`a resumed with pod a-search-${attempt + 1}`, () => !!pod(`a-search-${attempt + 1}`));
        }
        // The attempt fails (backoffLimit 0): the search fails and ttlSecondsAfterFinished deletes it.
        const failed = setPodState(pod('a-search-3')!, { phase: 'Failed', startedAt: new Date(Date.now() - 2000), finishedAt: new Date(), exitCode: 1 });
        await fake.mergePatchStatus(PodType, ns, 'a-search-3', { status: failed.status });
        await until('a failed and deleted after its TTL', () => !fake.objects('IACSearch', ns).some((s) => s.metadata.name === 'a'));

        // A set: two children, one held by maxParallel (create), released when it is raised
        // (patch), and one deleted when its seed leaves the matrix (delete); the set's status.
        const children = () => fake.objects('IACSearch', ns).filter((s) => s.metadata.labels?.['iac.dev/search-set'] === 'fleet');
        await fake.create({
          apiVersion: 'nas.iac.dev/v1alpha1',
          kind: 'IACSearchSet',
          metadata: { name: 'fleet', namespace: ns },
          spec: { template: { dataset: { format: 'phantom' } }, matrix: { seeds: [1, 2] }, maxParallel: 1 },
        });
        await until('the set made two children, one held', () => children().filter((c) => (c.spec as { suspend?: boolean }).suspend).length === 1);
        await fake.mergePatch(IACSearchSetType, ns, 'fleet', { spec: { maxParallel: 2 } });
        await until('the held child released', () => children().length === 2 && children().every((c) => !(c.spec as { suspend?: boolean }).suspend));
        await fake.mergePatch(IACSearchSetType, ns, 'fleet', { spec: { matrix: { seeds: [1] } } });
        await until('the removed seed deleted', () => children().length === 1);
      } finally {
        await op.stop();
        op = undefined;
      }
      if (unwatched) expect(phase('c', unwatched), 'a search in an unwatched namespace is left alone').toBeUndefined();

      const denied = api.requests.filter((q) => !allowed(objs, SA, q)).map(describeRequest);
      expect([...new Set(denied)], logs.filter((l) => /"level":"(warn|error)"/.test(l)).join('\n')).toEqual([]);
      // Everything granted was used, except update on the finalizers, which the
      // OwnerReferencesPermissionEnforcement admission plugin checks on each child's create.
      const used = new Set(api.requests.map((q) => `${q.group}|${q.resource}|${q.verb}`));
      const granted = new Set([...SEARCH_GRANTS, ...LEASE_GRANTS]);
      granted.delete('nas.iac.dev|iacsearches/finalizers|update');
      granted.delete('nas.iac.dev|iacsearchsets/finalizers|update');
      expect(
        [...granted].filter((g) => !used.has(g)),
        'granted but never used',
      ).toEqual([]);
      expect(
        [...used].filter((g) => !granted.has(g)),
        'used but not granted',
      ).toEqual([]);
      if (unwatched) expect(api.requests.filter((q) => q.namespace === unwatched || q.namespace === undefined).map(describeRequest)).toEqual([]);
    },
    300_000,
  );
});
