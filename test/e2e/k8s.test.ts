import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { bearer, connect, UnauthorizedError, type Tunnel } from '../../client/index.js';
import { createLogger } from '../../shared/log.js';
import { eventually } from '../contract/eventually.js';
import { freePort, onCleanup, spawnNode, useCleanup } from '../harness/index.js';
import { startKubeApiServer, type KubeApiServer, type KubeRule } from '../harness/kube-apiserver.js';
import { GROUP, startTestNode, testCerts, visit, type TestNode } from './helpers.js';

useCleanup();

const NS = 'reverst';
const GROUPS_REF = `k8s://configmap/${NS}/reverst-groups/groups.yml`;

const rules = (verbs: KubeRule['verbs'] = ['get', 'list', 'watch']): KubeRule[] => [
  { resource: 'configmaps', namespace: NS, resourceNames: ['reverst-groups'], verbs },
  { resource: 'secrets', namespace: NS, resourceNames: ['reverst-tokens', 'reverst-cluster', 'reverst-tls'], verbs },
];

function groupsYaml(hosts: string[]): string {
  return [
    'groups:',
    '  app:',
    `    hosts: [${hosts.join(', ')}]`,
    '    authentication:',
    '      bearer:',
    `        tokenPath: "k8s://secret/${NS}/reverst-tokens/app"`,
    '',
  ].join('\n');
}

async function withKube(): Promise<KubeApiServer> {
  const kube = await startKubeApiServer();
  kube.rules = rules();
  const saved = process.env.KUBECONFIG;
  process.env.KUBECONFIG = kube.kubeconfigPath;
  onCleanup(() => {
    if (saved === undefined) delete process.env.KUBECONFIG;
    else process.env.KUBECONFIG = saved;
  });
  return kube;
}

async function register(t: TestNode, token: string): Promise<Tunnel> {
  const tunnel = await connect({
    addresses: [t.address],
    serverName: GROUP,
    ca: t.ca.cert,
    group: 'app',
    auth: bearer(token),
    handler: () => new Response(`served with ${token}`),
    minDelayMs: 50,
    maxDelayMs: 200,
  });
  onCleanup(() => tunnel.close({ graceMs: 0 }));
  return tunnel;
}

describe('a node on k8s:// groups and tokens', () => {
  it('follows its ConfigMap and Secret end to end, and keeps serving through Kubernetes errors', async () => {
    const kube = await withKube();
    kube.putSecret(NS, 'reverst-tokens', { app: 'one\n' });
    kube.putConfigMap(NS, 'reverst-groups', { 'groups.yml': groupsYaml(['app.test']) });
    const lines: string[] = [];
    const t = await startTestNode({
      groups: GROUPS_REF,
      watchGroups: true,
      managementAddress: '127.0.0.1:0',
      logger: createLogger({ level: 'info', stream: { write: (line: string) => lines.push(line) } }),
    });
    const readyz = async () => {
      const res = await visit(t.node.managementAddress!.port, '/readyz');
      return { status: res.status, groupsSource: (JSON.parse(res.body.toString()) as { groupsSource?: string }).groupsSource };
    };
    const port = t.node.httpAddress.port;
    const logged = (pattern: RegExp) => eventually(() => expect(lines.some((l) => pattern.test(l))).toBe(true), 15_000);

    await register(t, 'one');
    expect((await visit(port, '/', { host: 'app.test' })).body.toString()).toBe('served with one');
    expect((await visit(port, '/', { host: 'new.test' })).status).toBe(404);

    // A host added to the ConfigMap routes without a restart.
    kube.putConfigMap(NS, 'reverst-groups', { 'groups.yml': groupsYaml(['app.test', 'new.test']) });
    await eventually(async () => expect((await visit(port, '/', { host: 'new.test' })).status).toBe(200), 15_000);

    // A rotated token in the Secret closes the tunnel that used the old one, and the new one gets in.
    const closed = once(t.node.registry, 'change');
    kube.putSecret(NS, 'reverst-tokens', { app: 'two\n' });
    await closed;
    await eventually(() => expect(t.node.registry.all()).toHaveLength(0), 15_000);
    await expect(register(t, 'one')).rejects.toBeInstanceOf(UnauthorizedError);
    await register(t, 'two');
    expect((await visit(port, '/', { host: 'new.test' })).body.toString()).toBe('served with two');

    // The ConfigMap deleted, then access revoked: both logged in one line, and the last good config serves on.
    kube.remove('configmaps', NS, 'reverst-groups');
    await logged(/keeping the last good config.*ConfigMap \\"reverst-groups\\" was deleted from namespace \\"reverst\\"/);
    expect(await readyz()).toEqual({
      status: 200,
      groupsSource: `${GROUPS_REF}: ConfigMap "reverst-groups" was deleted from namespace "reverst": create it, or fix the reference; serving the last good config`,
    });
    kube.rules = [];
    kube.dropWatches();
    await logged(/keeping the last good config.*forbidden: system:serviceaccount:reverst:reverst may not list configmaps/);
    expect((await visit(port, '/', { host: 'app.test' })).body.toString()).toBe('served with two');

    // Access and the ConfigMap back: the node catches up.
    kube.rules = rules();
    kube.putConfigMap(NS, 'reverst-groups', { 'groups.yml': groupsYaml(['back.test']) });
    await eventually(async () => expect((await visit(port, '/', { host: 'back.test' })).status).toBe(200), 15_000);
    expect((await visit(port, '/', { host: 'app.test' })).status).toBe(404);
    expect(await readyz()).toEqual({ status: 200, groupsSource: `following ${GROUPS_REF}` });
  });
});

describe('reverst with k8s:// flags', () => {
  it('starts with its groups, cluster secret and TLS key and certificate all read from Kubernetes', async () => {
    const kube = await withKube();
    const { server } = await testCerts();
    kube.putConfigMap(NS, 'reverst-groups', { 'groups.yml': groupsYaml(['app.test']) });
    kube.putSecret(NS, 'reverst-tokens', { app: 'one' });
    kube.putSecret(NS, 'reverst-cluster', { secret: 'shared-secret\n' });
    kube.putSecret(NS, 'reverst-tls', { 'tls.key': server.key, 'tls.crt': server.cert });
    const node = spawnNode(
      'cli.ts',
      [
        ...['-n', GROUP, '-a', '127.0.0.1:0', '-s', '127.0.0.1:0', '-w', '-g', GROUPS_REF],
        ...['-k', `k8s://secret/${NS}/reverst-tls/tls.key`, '-c', `k8s://secret/${NS}/reverst-tls/tls.crt`],
        ...['--cluster-secret-file', `k8s://secret/${NS}/reverst-cluster/secret`],
      ],
      { env: { KUBECONFIG: kube.kubeconfigPath } },
    );
    await node.waitForLine(/"msg":"node ready"/, 30_000);
    const gets = kube.requests.filter((r) => r.verb === 'get').map((r) => `${r.resource}/${r.name}`);
    expect(new Set(gets)).toEqual(new Set(['configmaps/reverst-groups', 'secrets/reverst-tokens', 'secrets/reverst-cluster', 'secrets/reverst-tls']));
    await eventually(() => expect(kube.openWatches).toBe(2), 15_000);
    await node.kill('SIGTERM');
  });

  it('runs a control plane on a ConfigMap and an API token from a Secret, following ConfigMap changes', async () => {
    const kube = await withKube();
    kube.rules = [...rules(), { resource: 'secrets', namespace: NS, resourceNames: ['reverst-control-plane'], verbs: ['get', 'list', 'watch'] }];
    kube.putConfigMap(NS, 'reverst-groups', { 'groups.yml': groupsYaml(['app.test']) });
    kube.putSecret(NS, 'reverst-tokens', { app: 'one' });
    kube.putSecret(NS, 'reverst-control-plane', { 'api-token': 'cp-token\n' });
    const port = await freePort();
    const cp = spawnNode(
      'cli.ts',
      ['control-plane', '-g', GROUPS_REF, '-w', '--listen', `127.0.0.1:${port}`, '--api-token-file', `k8s://secret/${NS}/reverst-control-plane/api-token`],
      { env: { KUBECONFIG: kube.kubeconfigPath } },
    );
    await cp.waitForLine(/"msg":"control plane ready"/, 30_000);
    const hosts = async () => {
      const res = await fetch(`http://127.0.0.1:${port}/v1/groups`, { headers: { authorization: 'Bearer cp-token' } });
      expect(res.status).toBe(200);
      return ((await res.json()) as { groups: Record<string, { hosts: string[] }> }).groups.app?.hosts;
    };
    expect(await hosts()).toEqual(['app.test']);
    expect((await fetch(`http://127.0.0.1:${port}/v1/groups`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    kube.putConfigMap(NS, 'reverst-groups', { 'groups.yml': groupsYaml(['app.test', 'new.test']) });
    await eventually(async () => expect(await hosts()).toEqual(['app.test', 'new.test']), 15_000);
    await cp.kill('SIGTERM');
  });

  it('exits with one line naming a missing ConfigMap', async () => {
    const kube = await withKube();
    // A Role that names the ConfigMap lets the get through to a 404 (without it the API answers 403).
    kube.rules = [{ resource: 'configmaps', namespace: NS, resourceNames: ['missing'], verbs: ['get'] }];
    const { server } = await testCerts();
    const node = spawnNode('cli.ts', ['-n', GROUP, '-k', server.keyPath, '-c', server.certPath, '-g', `k8s://configmap/${NS}/missing/groups.yml`], {
      env: { KUBECONFIG: kube.kubeconfigPath },
    });
    expect((await node.exited).code).toBe(2);
    expect(node.stderr).toEqual([
      `reverst: k8s://configmap/${NS}/missing/groups.yml: ConfigMap "missing" not found in namespace "reverst": create it, or fix the reference`,
    ]);
  });

  it('exits with one line naming the flag, the Secret and the Role rule when access is refused', async () => {
    const kube = await withKube();
    kube.putConfigMap(NS, 'reverst-groups', { 'groups.yml': 'groups: {}\n' });
    kube.putSecret(NS, 'other', { secret: 'x' });
    const { server } = await testCerts();
    const node = spawnNode(
      'cli.ts',
      ['-n', GROUP, '-k', server.keyPath, '-c', server.certPath, '-g', GROUPS_REF, '--cluster-secret-file', `k8s://secret/${NS}/other/secret`],
      { env: { KUBECONFIG: kube.kubeconfigPath } },
    );
    expect((await node.exited).code).toBe(2);
    expect(node.stderr).toEqual([
      `reverst: --cluster-secret-file: k8s://secret/${NS}/other/secret: forbidden: system:serviceaccount:reverst:reverst may not get secrets "other" in namespace "reverst": ` +
        'grant it in the Role (apiGroups: [""], resources: [secrets], resourceNames: [other], verbs: [get, list, watch])',
    ]);
  });

  it('exits with one line when there is no kube config', async () => {
    const { server } = await testCerts();
    const node = spawnNode('cli.ts', ['-n', GROUP, '-k', server.keyPath, '-c', server.certPath, '-g', GROUPS_REF], {
      env: { KUBECONFIG: '', HOME: '/nonexistent' },
    });
    expect((await node.exited).code).toBe(2);
    expect(node.stderr).toEqual([
      `reverst: ${GROUPS_REF}: no Kubernetes config: set KUBECONFIG to a kubeconfig file, or run in a pod with a service account (in-cluster config)`,
    ]);
  });
});
