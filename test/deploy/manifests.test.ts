/**
 * deploy/: what `kubectl kustomize` renders for each overlay, checked against the Kubernetes
 * schemas (kubernetes-models) and against the code: the flags the containers get are parsed by
 * the node's own flag parser, the probes are asked of a real node's management listener, and
 * the Roles are tried against the API-server stand-in with the code's own requests.
 * No Kubernetes API server can run here, so nothing is applied.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import * as models from 'kubernetes-models';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { type CONTROL_PLANE_FLAGS, parseControlPlaneFlags } from '../../control-plane/flags.js';
import { createControlPlane, PublishedGroups } from '../../control-plane/index.js';
import { parseNodeFlags, type NodeFlags } from '../../data-plane/flags.js';
import { LISTEN, parseHostPort } from '../../shared/address.js';
import type { FlagValues } from '../../shared/flags.js';
import { parseGroups } from '../../shared/config/groups.js';
import { K8sGroupsSource } from '../../shared/config/k8s-source.js';
import { parseKubeRef, type KubeRef } from '../../shared/config/k8s-ref.js';
import { readSecretRef } from '../../shared/config/secret-ref.js';
import { eventually } from '../contract/eventually.js';
import { startTestNode, visit } from '../e2e/helpers.js';
import { findBinary, onCleanup, useCleanup } from '../harness/index.js';
import { startKubeApiServer, type KubeRule } from '../harness/kube-apiserver.js';
import { watchEvents } from '../harness/source-events.js';

useCleanup();

// biome-ignore lint/suspicious/noExplicitAny: rendered manifests are free-form JSON, checked field by field below.
type Json = any;
interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: Json;
  data?: Record<string, string>;
  rules?: Json[];
  roleRef?: Json;
  subjects?: Json[];
}

const OVERLAYS = {
  redis: { store: 'reverst-redis', scheme: 'redis:' },
  nats: { store: 'reverst-nats', scheme: 'nats:' },
} as const;
type Overlay = keyof typeof OVERLAYS;

/** What the kubelet would put in fieldRef variables; any IPv4 address and pod name do. */
const POD_FIELDS: Record<string, string> = { 'status.podIP': '10.1.2.3', 'metadata.name': 'reverst-data-plane-7d9f-abcde' };

async function render(overlay: Overlay): Promise<KubeObject[]> {
  const { stdout } = await promisify(execFile)(findBinary('kubectl'), ['kustomize', `deploy/overlays/${overlay}`], { maxBuffer: 16 * 1024 * 1024 });
  return parseAllDocuments(stdout).map((doc) => doc.toJS() as KubeObject);
}

/** The kubernetes-models class for an object's apiVersion and kind, e.g. apps/v1 Deployment → models.apps.v1.Deployment. */
function modelFor(object: KubeObject): (new (data: unknown) => { validate(): void }) | undefined {
  const [group, version] = object.apiVersion.includes('/') ? object.apiVersion.split('/') : ['', object.apiVersion];
  const groupKey = group!.replace(/\.([a-z])/g, (_, c: string) => c.toUpperCase());
  const byGroup = (group === '' ? models : (models as Record<string, unknown>)[groupKey]) as Record<string, Record<string, unknown>> | undefined;
  return byGroup?.[version!]?.[object.kind] as (new (data: unknown) => { validate(): void }) | undefined;
}

const find = (objects: KubeObject[], kind: string, name: string): KubeObject => {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name} in the render: ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
  return found;
};

const matchesLabels = (selector: Record<string, string>, labels: Record<string, string> = {}) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

/** The container's environment as the kubelet builds it: fieldRefs filled in, `$(VAR)` of earlier entries expanded. */
function containerEnv(container: Json): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of container.env ?? []) {
    if (e.valueFrom) {
      const field = POD_FIELDS[e.valueFrom.fieldRef?.fieldPath];
      if (field === undefined) throw new Error(`env ${e.name}: no stand-in value for ${JSON.stringify(e.valueFrom)}`);
      env[e.name] = field;
    } else env[e.name] = String(e.value ?? '').replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (whole, name: string) => env[name] ?? whole);
  }
  return env;
}

function deploymentContainer(objects: KubeObject[], name: string, container: string) {
  const deployment = find(objects, 'Deployment', name);
  const pod = deployment.spec.template.spec;
  const c = pod.containers.find((x: Json) => x.name === container);
  if (!c) throw new Error(`Deployment ${name} has no container ${container}`);
  return { deployment, pod, container: c };
}

/** A container port by name or number. */
function containerPort(container: Json, port: string | number): Json {
  const found = (container.ports ?? []).find((p: Json) => p.name === port || p.containerPort === port);
  if (!found) throw new Error(`container ${container.name} has no port ${port}`);
  return found;
}

/** The flags a container's node runs with, parsed by the node's own parser (defaults, REVERST_* variables, checks). */
function nodeFlags(container: Json): NodeFlags {
  const flags = parseNodeFlags(container.args ?? [], containerEnv(container));
  if (flags.help) throw new Error('the container asks for -h');
  return flags;
}

/** Every k8s:// reference in a container's args and environment. */
function refsIn(container: Json): KubeRef[] {
  const values = [...(container.args ?? []), ...Object.values(containerEnv(container))].map(String);
  return values.filter((v) => v.startsWith('k8s://')).map((v) => parseKubeRef(v));
}

/** The Secrets named as token paths in a groups key, read with the code's own parser. */
async function tokenRefs(groupsText: string, source: string): Promise<KubeRef[]> {
  const refs: KubeRef[] = [];
  await parseGroups(groupsText, source, {
    readFile: async (path) => {
      refs.push(parseKubeRef(path, 'secret'));
      return 'a'.repeat(64);
    },
  });
  return refs;
}

/** The objects a Deployment reads through the API: its args and env, and the Secrets its groups ConfigMap names. */
async function apiReads(objects: KubeObject[], container: Json): Promise<KubeRef[]> {
  const refs = refsIn(container);
  for (const ref of refs.filter((r) => r.kind === 'configmap')) {
    const configMap = find(objects, 'ConfigMap', ref.name);
    const text = configMap.data?.[ref.key];
    if (text === undefined) throw new Error(`${ref.url}: the rendered ConfigMap has no key ${ref.key}`);
    refs.push(...(await tokenRefs(text, ref.url)));
  }
  return refs;
}

function roleFor(objects: KubeObject[], deployment: KubeObject): KubeObject {
  const sa = deployment.spec.template.spec.serviceAccountName;
  const ns = deployment.metadata.namespace;
  const bindings = objects.filter(
    (o) => o.kind === 'RoleBinding' && o.subjects?.some((s: Json) => s.kind === 'ServiceAccount' && s.name === sa && s.namespace === ns),
  );
  expect(bindings, `one RoleBinding for ServiceAccount ${sa}`).toHaveLength(1);
  expect(bindings[0]!.roleRef).toMatchObject({ kind: 'Role', apiGroup: 'rbac.authorization.k8s.io' });
  find(objects, 'ServiceAccount', sa);
  return find(objects, 'Role', bindings[0]!.roleRef.name);
}

const rendered = {} as Record<Overlay, KubeObject[]>;
beforeAll(async () => {
  for (const overlay of Object.keys(OVERLAYS) as Overlay[]) rendered[overlay] = await render(overlay);
});

describe.each(Object.keys(OVERLAYS) as Overlay[])('deploy/overlays/%s', (overlay) => {
  const objects = () => rendered[overlay];
  const { store, scheme } = OVERLAYS[overlay];

  it('renders the objects of a cluster, all in the reverst namespace', () => {
    const names = objects().map((o) => `${o.kind}/${o.metadata.name}`);
    expect(names.sort()).toEqual(
      [
        'Namespace/reverst',
        'ServiceAccount/reverst-data-plane',
        'ServiceAccount/reverst-control-plane',
        'Role/reverst-data-plane',
        'Role/reverst-control-plane',
        'RoleBinding/reverst-data-plane',
        'RoleBinding/reverst-control-plane',
        'ConfigMap/reverst-groups',
        'Deployment/reverst-control-plane',
        'Service/reverst-control-plane',
        'Deployment/reverst-data-plane',
        'Service/reverst',
        'Service/reverst-hop',
        'PodDisruptionBudget/reverst-data-plane',
        `Deployment/${store}`,
        `Service/${store}`,
        `NetworkPolicy/${store}`,
      ].sort(),
    );
    for (const o of objects()) if (o.kind !== 'Namespace') expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe('reverst');
  });

  it('validates every object against the Kubernetes schemas', () => {
    for (const o of objects()) {
      const Model = modelFor(o);
      expect(Model, `a schema for ${o.apiVersion} ${o.kind}`).toBeDefined();
      expect(() => new Model!(o).validate(), `${o.kind}/${o.metadata.name}`).not.toThrow();
    }
  });

  it('has selectors that match the labels of the pods they mean', () => {
    const deployments = objects().filter((o) => o.kind === 'Deployment');
    for (const d of deployments) {
      expect(matchesLabels(d.spec.selector.matchLabels, d.spec.template.metadata.labels), `Deployment ${d.metadata.name}`).toBe(true);
    }
    const selected = (selector: Record<string, string>) => deployments.filter((d) => matchesLabels(selector, d.spec.template.metadata.labels));
    const target: Record<string, string> = {
      reverst: 'reverst-data-plane',
      'reverst-hop': 'reverst-data-plane',
      'reverst-control-plane': 'reverst-control-plane',
      [store]: store,
    };
    for (const service of objects().filter((o) => o.kind === 'Service')) {
      const pods = selected(service.spec.selector);
      expect(
        pods.map((d) => d.metadata.name),
        `Service ${service.metadata.name} selects`,
      ).toEqual([target[service.metadata.name]]);
      // Each port leads to a container port of the same protocol.
      const container = pods[0]!.spec.template.spec.containers[0];
      for (const port of service.spec.ports) {
        expect(containerPort(container, port.targetPort).protocol ?? 'TCP', `${service.metadata.name}:${port.name}`).toBe(port.protocol ?? 'TCP');
      }
    }
    const pdb = find(objects(), 'PodDisruptionBudget', 'reverst-data-plane');
    expect(selected(pdb.spec.selector.matchLabels).map((d) => d.metadata.name)).toEqual(['reverst-data-plane']);
    for (const d of deployments) {
      const spread = d.spec.template.spec.topologySpreadConstraints ?? [];
      for (const c of spread) expect(matchesLabels(c.labelSelector.matchLabels, d.spec.template.metadata.labels)).toBe(true);
    }
  });

  describe('the data plane', () => {
    let flags: NodeFlags;
    let container: Json;
    let pod: Json;
    let deployment: KubeObject;
    beforeAll(() => {
      ({ deployment, pod, container } = deploymentContainer(rendered[overlay], 'reverst-data-plane', 'data-plane'));
      // The node's own parser: defaults, REVERST_* variables and validation as the binary applies them.
      flags = nodeFlags(container);
    });

    it('runs three replicas of the image the Dockerfile builds, with a disruption budget below that', async () => {
      const { version } = JSON.parse(await readFile('package.json', 'utf8')) as { version: string };
      expect(deployment.spec.replicas).toBe(3);
      expect(container.image).toBe(`reverst:${version}`);
      expect(find(objects(), 'PodDisruptionBudget', 'reverst-data-plane').spec.maxUnavailable).toBe(1);
    });

    it('listens where its container ports say, reachable from outside the pod', () => {
      const at = (address: string | undefined) => parseHostPort(address ?? '', LISTEN);
      const tunnel = at(flags.tunnelAddress);
      const http = at(flags.httpAddress);
      const management = at(flags.managementAddress);
      const internal = at(flags.internalAddress);
      expect(containerPort(container, 'tunnel')).toMatchObject({ containerPort: tunnel.port, protocol: 'UDP' });
      expect(containerPort(container, 'http')).toMatchObject({ containerPort: http.port, protocol: 'TCP' });
      expect(containerPort(container, 'management')).toMatchObject({ containerPort: management.port, protocol: 'TCP' });
      expect(containerPort(container, 'internal')).toMatchObject({ containerPort: internal.port, protocol: 'TCP' });
      for (const bound of [tunnel, http, management]) expect(bound.host).toBe('0.0.0.0');
      // The hop address is what the node publishes to the others: the pod's own IP.
      expect(internal.host).toBe(POD_FIELDS['status.podIP']);
      expect(flags.nodeId).toBe(POD_FIELDS['metadata.name']);
      expect((container.ports as Json[]).map((p) => p.name).sort()).toEqual(['http', 'internal', 'management', 'tunnel']);
    });

    it('probes /healthz and /readyz on the management port, which a real node answers that way', async () => {
      const { livenessProbe: live, readinessProbe: ready } = container;
      const management = parseHostPort(flags.managementAddress ?? '', LISTEN).port;
      expect(containerPort(container, live.httpGet.port).containerPort).toBe(management);
      expect(containerPort(container, ready.httpGet.port).containerPort).toBe(management);
      const t = await startTestNode({ managementAddress: '127.0.0.1:0' });
      const port = t.node.managementAddress!.port;
      const liveness = await visit(port, live.httpGet.path);
      expect(liveness.status).toBe(200);
      // The readiness path is the one that reports readiness (and answers 503 while the node drains).
      const readiness = await visit(port, ready.httpGet.path);
      expect(readiness.status).toBe(200);
      expect(JSON.parse(readiness.body.toString())).toMatchObject({ ready: true });
    });

    it('shares membership through the overlay store, which a Service in the render serves', () => {
      const url = new URL(flags.membership);
      expect(url.protocol).toBe(scheme);
      expect(url.hostname).toBe(store);
      const service = find(objects(), 'Service', store);
      const port = service.spec.ports.find((p: Json) => p.port === Number(url.port));
      expect(port, `${store} serves port ${url.port}`).toBeDefined();
      const { container: storeContainer } = deploymentContainer(objects(), store, store === 'reverst-redis' ? 'redis' : 'nats');
      expect(containerPort(storeContainer, port.targetPort).containerPort).toBe(Number(url.port));
    });

    it('lets only data-plane pods reach the store (a record written there would receive visitors and the cluster secret)', () => {
      const policy = find(objects(), 'NetworkPolicy', store);
      const { deployment: storeDeployment, container: storeContainer } = deploymentContainer(objects(), store, store === 'reverst-redis' ? 'redis' : 'nats');
      const selects = (selector: Json, labels: Record<string, string>) => Object.entries(selector.matchLabels).every(([k, v]) => labels[k] === v);
      expect(selects(policy.spec.podSelector, storeDeployment.spec.template.metadata.labels)).toBe(true);
      expect(policy.spec.policyTypes).toEqual(['Ingress']);
      expect(policy.spec.ingress).toHaveLength(1);
      const [rule] = policy.spec.ingress;
      expect(rule.from).toHaveLength(1);
      const admitted = objects().filter((o) => o.kind === 'Deployment' && selects(rule.from[0].podSelector, o.spec.template.metadata.labels));
      expect(admitted.map((o) => o.metadata.name)).toEqual([deployment.metadata.name]);
      // The port the nodes dial, and nothing else.
      expect(rule.ports.map((p: Json) => containerPort(storeContainer, p.port).containerPort)).toEqual([Number(new URL(flags.membership).port)]);
    });

    it('reads its groups from the rendered ConfigMap through k8s:// and watches them', async () => {
      expect(flags.watchGroups).toBe(true);
      const ref = parseKubeRef(flags.tunnelGroups, 'configmap');
      expect(ref.namespace).toBe(deployment.metadata.namespace);
      const text = find(objects(), 'ConfigMap', ref.name).data?.[ref.key];
      expect(text).toBeDefined();
      const config = await parseGroups(text!, ref.url, { readFile: async () => 'a'.repeat(64) });
      expect(config.groups.size).toBeGreaterThan(0);
    });

    it('takes the cluster secret from a Secret and TLS from a mounted Secret', () => {
      expect(flags.clusterSecret).toBeUndefined();
      expect(parseKubeRef(flags.clusterSecretFile ?? '', 'secret').namespace).toBe('reverst');
      const mounts = container.volumeMounts as Json[];
      for (const [path, key] of [
        [flags.privateKeyPath, 'tls.key'],
        [flags.certificatePath, 'tls.crt'],
      ] as const) {
        const mount = mounts.find((m) => path === `${m.mountPath}/${key}`);
        expect(mount, `a volume mounted for ${path}`).toBeDefined();
        const volume = (pod.volumes as Json[]).find((v) => v.name === mount.name);
        expect(volume.secret?.secretName).toBe('reverst-tls');
      }
    });

    it('gives a draining node more time than it takes', () => {
      const preStopSeconds = Number(container.lifecycle?.preStop?.exec?.command?.[1] ?? 0);
      expect(container.lifecycle.preStop.exec.command[0]).toBe('sleep');
      expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(flags.drainTimeoutMs + preStopSeconds * 1000);
    });
  });

  describe('the control plane', () => {
    let container: Json;
    let flags: FlagValues<typeof CONTROL_PLANE_FLAGS>;
    beforeAll(() => {
      ({ container } = deploymentContainer(rendered[overlay], 'reverst-control-plane', 'control-plane'));
      expect(container.args[0]).toBe('control-plane');
      // The control plane's own parser, on what follows the command word.
      const parsed = parseControlPlaneFlags(container.args.slice(1), containerEnv(container));
      if (parsed.help) throw new Error('the container asks for -h');
      flags = parsed;
    });

    it('serves the same groups ConfigMap as the nodes, with its API token from a Secret', () => {
      const dataPlane = deploymentContainer(objects(), 'reverst-data-plane', 'data-plane').container;
      expect(flags.tunnelGroups).toBe(nodeFlags(dataPlane).tunnelGroups);
      expect(flags.watchGroups).toBe(true);
      expect(flags.apiToken).toBeUndefined();
      expect(parseKubeRef(flags.apiTokenFile ?? '', 'secret').namespace).toBe('reverst');
    });

    it('listens where its port says, and probes /healthz and /readyz there, which the control plane answers that way', async () => {
      const listen = parseHostPort(flags.listen, LISTEN);
      expect(listen.host).toBe('0.0.0.0');
      expect(containerPort(container, 'http').containerPort).toBe(listen.port);
      const { livenessProbe: live, readinessProbe: ready } = container;
      expect(containerPort(container, live.httpGet.port).containerPort).toBe(listen.port);
      expect(containerPort(container, ready.httpGet.port).containerPort).toBe(listen.port);
      const groups = new PublishedGroups({ saltKey: 'token' });
      const app = createControlPlane({ groups, apiToken: 'token' });
      expect((await app.request(live.httpGet.path)).status).toBe(200);
      // The readiness path is the one that says whether there is a config to serve.
      expect((await app.request(ready.httpGet.path)).status).toBe(503);
      await groups.publish({ groups: new Map() }, 'test');
      expect((await app.request(ready.httpGet.path)).status).toBe(200);
      expect((await app.request(live.httpGet.path)).status).toBe(200);
    });
  });

  it('asks for resources and runs as a non-root user in every pod', () => {
    for (const d of objects().filter((o) => o.kind === 'Deployment')) {
      const pod = d.spec.template.spec;
      expect(pod.securityContext.runAsNonRoot, d.metadata.name).toBe(true);
      expect(pod.securityContext.runAsUser, d.metadata.name).toBeGreaterThan(0);
      for (const c of pod.containers) {
        expect(c.resources?.requests?.cpu, `${d.metadata.name}/${c.name}`).toBeDefined();
        expect(c.resources?.requests?.memory, `${d.metadata.name}/${c.name}`).toBeDefined();
        expect(c.livenessProbe && c.readinessProbe, `${d.metadata.name}/${c.name} probes`).toBeTruthy();
      }
    }
  });

  it.each(['reverst-data-plane', 'reverst-control-plane'])(
    '%s: its Role names exactly the ConfigMaps and Secrets it reads, for get, list and watch',
    async (name) => {
      const deployment = find(objects(), 'Deployment', name);
      const container = deployment.spec.template.spec.containers[0];
      const reads = await apiReads(objects(), container);
      const role = roleFor(objects(), deployment);
      for (const ref of reads) expect(ref.namespace, ref.url).toBe(role.metadata.namespace);
      const names = (kind: string) => [...new Set(reads.filter((r) => r.kind === kind).map((r) => r.name))].sort();
      expect(role.rules).toHaveLength(2);
      for (const rule of role.rules!) {
        expect(rule.apiGroups).toEqual(['']);
        expect(rule.verbs).toEqual(['get', 'list', 'watch']);
        expect(rule.resources).toHaveLength(1);
      }
      const rule = (resource: string) => role.rules!.find((r: Json) => r.resources[0] === resource);
      expect(rule('configmaps').resourceNames.sort()).toEqual(names('configmap'));
      expect(rule('secrets').resourceNames.sort()).toEqual(names('secret'));
    },
  );
});

describe('the rendered data-plane Role, tried against the API-server stand-in', () => {
  it('lets the node load and watch its groups, the Secrets they name, and its cluster secret, and nothing else', async () => {
    const objects = rendered.redis;
    const { deployment, container } = deploymentContainer(objects, 'reverst-data-plane', 'data-plane');
    const flags = nodeFlags(container);
    const role = roleFor(objects, deployment);
    const kube = await startKubeApiServer();
    kube.rules = (role.rules as Json[]).map(
      (r): KubeRule => ({ resource: r.resources[0], namespace: role.metadata.namespace!, verbs: r.verbs, resourceNames: r.resourceNames }),
    );
    const groupsRef = parseKubeRef(flags.tunnelGroups, 'configmap');
    const configMap = find(objects, 'ConfigMap', groupsRef.name);
    kube.putConfigMap(groupsRef.namespace, groupsRef.name, configMap.data!);
    const secrets = (await apiReads(objects, container)).filter((r) => r.kind === 'secret');
    for (const ref of secrets) kube.putSecret(ref.namespace, ref.name, { [ref.key]: 'value' });
    kube.putSecret('reverst', 'unrelated', { x: 'y' });
    const saved = process.env.KUBECONFIG;
    process.env.KUBECONFIG = kube.kubeconfigPath;
    onCleanup(() => {
      if (saved === undefined) delete process.env.KUBECONFIG;
      else process.env.KUBECONFIG = saved;
    });

    expect(await readSecretRef(flags.clusterSecretFile!)).toBe('value');
    const source = new K8sGroupsSource(flags.tunnelGroups);
    onCleanup(() => source.close());
    await source.load();
    const events = watchEvents(source);
    // The ConfigMap and each Secret its token paths name, followed by list + watch.
    const tokenSecrets = new Set((await tokenRefs(configMap.data![groupsRef.key]!, groupsRef.url)).map((r) => r.name));
    await eventually(() => expect(kube.openWatches).toBe(1 + tokenSecrets.size), 10_000);
    expect(events.pending).toEqual([]);
    expect(kube.requests.filter((r) => r.status !== 200)).toEqual([]);
    await expect(readSecretRef('k8s://secret/reverst/unrelated/x')).rejects.toMatchObject({ code: 'ERR_K8S_FORBIDDEN' });
  });
});

describe('the checks themselves', () => {
  it('a schema violation fails validation', () => {
    const broken = structuredClone(find(rendered.redis, 'Deployment', 'reverst-data-plane'));
    broken.spec.template.spec.containers[0].ports[0].containerPort = 'seven';
    expect(() => new (modelFor(broken)!)(broken).validate()).toThrow(/containerPort/);
  });

  it('the README creates every Secret the manifests need before `kubectl apply -k`', async () => {
    const readme = await readFile('README.md', 'utf8');
    const created = new Set([...readme.matchAll(/kubectl -n reverst create secret (?:generic|tls) ([a-z0-9-]+)/g)].map((m) => m[1]));
    for (const overlay of Object.keys(OVERLAYS) as Overlay[]) {
      const objects = rendered[overlay];
      const needed = new Set<string>();
      for (const d of objects.filter((o) => o.kind === 'Deployment')) {
        for (const v of d.spec.template.spec.volumes ?? []) if (v.secret) needed.add(v.secret.secretName);
        for (const c of d.spec.template.spec.containers) for (const ref of await apiReads(objects, c)) if (ref.kind === 'secret') needed.add(ref.name);
      }
      expect(
        [...needed].filter((name) => !created.has(name)),
        `Secrets ${overlay} needs that the README does not create`,
      ).toEqual([]);
      expect(readme).toContain(`kubectl apply -k deploy/overlays/${overlay}`);
    }
  });
});
