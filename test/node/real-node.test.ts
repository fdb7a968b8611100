// Smoke test of the real-node harness (test/node/real-node.ts): a real kubelet, containerd
// and runc run pods of the test control plane. Proves what the test kubelet only models:
// Pod Security "restricted" admission of a real container, termination messages and
// hostPath claims through real mounts, the in-cluster `kubernetes` Service with a
// service-account token, and a memory limit enforced by the kernel (OOMKilled).
import { readFileSync, chownSync, chmodSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, waitFor, type Cluster } from '../cluster/control-plane.ts';
import { busyboxArchive, BUSYBOX_IMAGE } from './images.ts';
import { nodeAvailability, startNode, type RealNode } from './real-node.ts';

const availability = nodeAvailability();
const TEST_TIMEOUT = 300_000;

describe.skipIf(availability.skip)('real node: kubelet + containerd + runc + kube-proxy', () => {
  let cluster: Cluster;
  let node: RealNode;
  const ns = 'real-node';
  const timings: Record<string, number> = {};

  beforeAll(async () => {
    if (availability.reason) throw new Error(availability.reason);
    const t0 = Date.now();
    cluster = await startCluster({ persistentVolumes: 1, volumeSize: '1Gi', realNodes: true });
    timings.cluster = Date.now() - t0;
    const t1 = Date.now();
    node = await startNode(cluster, { name: 'real-node-1' });
    timings.nodeReady = Date.now() - t1;
    await node.importImage(busyboxArchive());
    await cluster.client.create('/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: ns, labels: { 'pod-security.kubernetes.io/enforce': 'restricted', 'pod-security.kubernetes.io/enforce-version': 'latest' } },
    });
    await waitFor('default service account', () => cluster.client.find(`/api/v1/namespaces/${ns}/serviceaccounts/default`), 60_000);
    await waitFor('kube-root-ca.crt', () => cluster.client.find(`/api/v1/namespaces/${ns}/configmaps/kube-root-ca.crt`), 60_000);
  }, 600_000);

  afterAll(async () => {
    console.log(`real-node timings (ms): ${JSON.stringify(timings)}`);
    await cluster?.stop();
  }, 300_000);

  const restricted = {
    runAsNonRoot: true,
    runAsUser: 1000,
    runAsGroup: 1000,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  };
  const pod = (name: string, script: string, extra: Record<string, unknown> = {}, container: Record<string, unknown> = {}) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: ns },
    spec: {
      restartPolicy: 'Never',
      securityContext: { seccompProfile: { type: 'RuntimeDefault' } },
      containers: [
        {
          name: 'main',
          image: BUSYBOX_IMAGE,
          imagePullPolicy: 'Never',
          command: ['/bin/sh', '-c', script],
          securityContext: restricted,
          resources: { limits: { cpu: '200m', memory: '64Mi' }, requests: { cpu: '10m', memory: '16Mi' } },
          ...container,
        },
      ],
      ...extra,
    },
  });
  const finished = (name: string, timeoutMs = 240_000) =>
    waitFor(
      `pod ${name} to finish`,
      async () => {
        const p = await cluster.client.get(`/api/v1/namespaces/${ns}/pods/${name}`);
        return p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed' ? p : undefined;
      },
      timeoutMs,
      500,
    );
  const describePod = async (name: string) => {
    const p = await cluster.client.get(`/api/v1/namespaces/${ns}/pods/${name}`);
    const logs = await cluster.kubectl(['logs', '-n', ns, name], { allowFail: true });
    return `${JSON.stringify(p.status, null, 1)}\nlogs: ${logs.stdout}${logs.stderr}`;
  };

  it(
    'registers the Node Ready with allocatable cpu and memory from the real machine',
    async () => {
      const n = await cluster.client.get(`/api/v1/nodes/${node.name}`);
      expect(n.status.conditions.find((c: { type: string }) => c.type === 'Ready').status).toBe('True');
      expect(Number(n.status.allocatable.cpu)).toBeGreaterThan(0);
      expect(n.status.allocatable.memory).toMatch(/^\d+Ki$/);
      expect(n.status.nodeInfo.containerRuntimeVersion).toMatch(/^containerd:\/\//);
      expect(n.status.addresses).toContainEqual({ type: 'InternalIP', address: node.gatewayIP });
      expect(n.metadata.labels['iacnas.test/real-node']).toBe('true');
    },
    TEST_TIMEOUT,
  );

  it(
    'runs a restricted pod that writes its termination message and a file on a hostPath claim',
    async () => {
      const t0 = Date.now();
      await cluster.client.create(`/api/v1/namespaces/${ns}/persistentvolumeclaims`, {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        metadata: { name: 'data' },
        spec: { accessModes: ['ReadWriteOnce'], storageClassName: '', resources: { requests: { storage: '1Gi' } } },
      });
      const pvc = await waitFor('claim bound', async () => {
        const c = await cluster.client.get(`/api/v1/namespaces/${ns}/persistentvolumeclaims/data`);
        return c.status?.phase === 'Bound' ? c : undefined;
      });
      const pv = await cluster.client.get(`/api/v1/persistentvolumes/${pvc.spec.volumeName}`);
      const hostDir: string = pv.spec.hostPath.path;
      // A hostPath volume keeps the host's ownership (no fsGroup); uid 1000 must write it.
      chownSync(hostDir, 1000, 1000);
      chmodSync(hostDir, 0o755);
      await cluster.client.create(
        `/api/v1/namespaces/${ns}/pods`,
        pod(
          'writer',
          'id -u > /data/uid && echo "hello from $(hostname)" > /data/hello.txt && echo "done: 42 trials" > /dev/termination-log',
          {
            volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'data' } }],
          },
          { volumeMounts: [{ name: 'data', mountPath: '/data' }] },
        ),
      );
      const p = await finished('writer');
      if (p.status.phase !== 'Succeeded') throw new Error(`writer did not succeed: ${await describePod('writer')}`);
      const term = p.status.containerStatuses[0].state.terminated;
      expect(term.exitCode).toBe(0);
      expect(term.message).toBe('done: 42 trials\n');
      expect(p.spec.nodeName).toBe(node.name);
      expect(readFileSync(path.join(hostDir, 'hello.txt'), 'utf8')).toBe('hello from writer\n');
      expect(readFileSync(path.join(hostDir, 'uid'), 'utf8').trim()).toBe('1000');
      timings.writerPod = Date.now() - t0;
    },
    TEST_TIMEOUT,
  );

  it(
    'reaches the API server through the kubernetes Service with its service-account token',
    async () => {
      const t0 = Date.now();
      // busybox wget speaks TLS (its ssl_client) but does not verify the server
      // certificate; the token is what the API server checks: a SelfSubjectReview answers
      // with the user the request ran as, which proves ClusterIP routing by kube-proxy,
      // the TLS path and token authentication; reading another namespace's service
      // account is then refused (403) by RBAC.
      const script = [
        'set -e',
        'SA=/var/run/secrets/kubernetes.io/serviceaccount',
        'TOKEN=$(cat $SA/token)',
        'URL=https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT',
        'wget -q -O /tmp/version --header "Authorization: Bearer $TOKEN" $URL/version',
        'wget -q -O /tmp/whoami --header "Authorization: Bearer $TOKEN" --header "Content-Type: application/json" --post-data \'{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}\' $URL/apis/authentication.k8s.io/v1/selfsubjectreviews',
        'wget -q -O /tmp/sa --header "Authorization: Bearer $TOKEN" $URL/api/v1/namespaces/kube-system/serviceaccounts/default 2>/tmp/err && echo allowed > /tmp/sa-status || echo forbidden > /tmp/sa-status',
        'grep -q "BEGIN CERTIFICATE" $SA/ca.crt',
        'echo "$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT $(tr -d "\\n " < /tmp/version | head -c 200) $(tr -d "\\n " < /tmp/whoami | grep -o \'"username":"[^"]*"\') sa=$(cat /tmp/sa-status)" > /dev/termination-log',
      ].join('\n');
      await cluster.client.create(
        `/api/v1/namespaces/${ns}/pods`,
        pod('incluster', script, { volumes: [{ name: 'tmp', emptyDir: {} }] }, { volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }] }),
      );
      // /tmp is writable through an emptyDir (the root filesystem is read-only).
      const p = await finished('incluster');
      if (p.status.phase !== 'Succeeded') throw new Error(`incluster did not succeed: ${await describePod('incluster')}`);
      const msg: string = p.status.containerStatuses[0].state.terminated.message;
      expect(msg).toMatch(/^10\.0\.0\.1:443 /);
      expect(msg).toContain('"gitVersion":"v1.34');
      expect(msg).toContain(`"username":"system:serviceaccount:${ns}:default"`);
      // The default service account may not read service accounts (RBAC): a 403.
      expect(msg).toContain('sa=forbidden');
      timings.inClusterPod = Date.now() - t0;
    },
    TEST_TIMEOUT,
  );

  it(
    'routes a pod to another pod through a ClusterIP Service (the trainer -> operator path)',
    async () => {
      const t0 = Date.now();
      // The server answers every request with one file (busybox httpd serves /www).
      const server = pod(
        'server',
        'mkdir -p /www && echo "progress ok" > /www/index.html && exec httpd -f -p 8080 -h /www',
        { volumes: [{ name: 'www', emptyDir: {} }] },
        { volumeMounts: [{ name: 'www', mountPath: '/www' }], ports: [{ containerPort: 8080, name: 'http' }] },
      );
      (server.metadata as Record<string, unknown>).labels = { app: 'server' };
      await cluster.client.create(`/api/v1/namespaces/${ns}/pods`, server);
      const svc = await cluster.client.create(`/api/v1/namespaces/${ns}/services`, {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'server' },
        spec: { selector: { app: 'server' }, ports: [{ name: 'http', port: 8080, targetPort: 'http' }] },
      });
      const ip: string = svc.spec.clusterIP;
      await waitFor(
        'a ready endpoint of Service server',
        async () => {
          const slices = await cluster.client.get(
            `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dserver`,
          );
          return slices.items.some((s: { endpoints?: Array<{ conditions?: { ready?: boolean } }> }) => (s.endpoints ?? []).some((e) => e.conditions?.ready));
        },
        240_000,
        500,
      );
      // kube-proxy programs the rules shortly after the slice changes; the client retries.
      // (busybox wget -T crashes (SIGSEGV) in this static build: timeout(1) bounds it.)
      await cluster.client.create(
        `/api/v1/namespaces/${ns}/pods`,
        pod(
          'client',
          `for i in $(seq 1 60); do timeout 5 wget -q -O - http://${ip}:8080/ > /tmp/out && break; sleep 1; done; cat /tmp/out > /dev/termination-log; grep -q "progress ok" /tmp/out`,
          {
            volumes: [{ name: 'tmp', emptyDir: {} }],
          },
          { volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }] },
        ),
      );
      const p = await finished('client');
      if (p.status.phase !== 'Succeeded') throw new Error(`client did not succeed: ${await describePod('client')}`);
      expect(p.status.containerStatuses[0].state.terminated.message).toBe('progress ok\n');
      timings.servicePods = Date.now() - t0;
    },
    TEST_TIMEOUT,
  );

  it(
    'OOM-kills a container over its memory limit and reports OOMKilled',
    async () => {
      const t0 = Date.now();
      // tail keeps a line without a newline in memory: /dev/zero has none.
      await cluster.client.create(
        `/api/v1/namespaces/${ns}/pods`,
        pod('hog', 'tail /dev/zero', {}, { resources: { limits: { cpu: '200m', memory: '32Mi' }, requests: { cpu: '10m', memory: '32Mi' } } }),
      );
      const p = await finished('hog');
      const term = p.status.containerStatuses[0].state.terminated;
      if (term?.reason !== 'OOMKilled') throw new Error(`hog was not OOM-killed: ${await describePod('hog')}`);
      expect(p.status.phase).toBe('Failed');
      expect(term.exitCode).toBe(137);
      timings.oomPod = Date.now() - t0;
    },
    TEST_TIMEOUT,
  );
});
