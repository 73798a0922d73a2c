import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { eventually } from '../../test/contract/eventually.js';
import { startHttpServer, tempDir, useCleanup } from '../../test/harness/index.js';
import { startKubeApiServer, type KubeApiServer, type KubeRule, type KubeVerb } from '../../test/harness/kube-apiserver.js';
import { watchEvents } from '../../test/harness/source-events.js';
import { ConfigError, ERROR_CODES } from '../errors.js';
import type { GroupsConfig } from './groups.js';
import { K8sGroupsSource } from './k8s-source.js';
import { KubernetesError } from './k8s-ref.js';
import { groupsSourceFromUrl } from './source.js';

useCleanup();

const NS = 'reverst';
const REF = `k8s://configmap/${NS}/groups/groups.yml`;
const groupsYaml = (host: string) => `groups:\n  g:\n    hosts: [${host}]\n`;
const hostOf = (config: GroupsConfig) => config.groups.get('g')?.hosts[0];
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** The Role our manifests use: named objects only, list and watch through the name selector. */
function role(verbs: KubeVerb[] = ['get', 'list', 'watch']): KubeRule[] {
  return [
    { resource: 'configmaps', namespace: NS, resourceNames: ['groups'], verbs },
    { resource: 'secrets', namespace: NS, resourceNames: ['tokens'], verbs },
  ];
}

let kube: KubeApiServer;
let sources: K8sGroupsSource[];
const savedKubeconfig = process.env.KUBECONFIG;

beforeEach(async () => {
  kube = await startKubeApiServer();
  kube.rules = role();
  process.env.KUBECONFIG = kube.kubeconfigPath;
  sources = [];
});
afterEach(() => {
  for (const source of sources) source.close();
  if (savedKubeconfig === undefined) delete process.env.KUBECONFIG;
  else process.env.KUBECONFIG = savedKubeconfig;
});

function source(url = REF): K8sGroupsSource {
  // Fast retries: a test waits for recovery, not for production backoff.
  const s = new K8sGroupsSource(url, { debounceMs: 20, retryMs: 50, maxRetryMs: 500 });
  sources.push(s);
  return s;
}

const watchRequests = () => kube.requests.filter((r) => r.verb === 'watch');
const listRequests = () => kube.requests.filter((r) => r.verb === 'list');

async function rejection(promise: Promise<unknown>): Promise<Error> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: Error) => err,
  );
}

describe('K8sGroupsSource: load', () => {
  it('reads the key of the ConfigMap with a get, which a Role can grant by name', async () => {
    kube.putConfigMap(NS, 'groups', { 'groups.yml': groupsYaml('one.dev'), other: 'x' });
    kube.rules = role(['get']);
    const config = await source().load();
    expect(hostOf(config)).toBe('one.dev');
    expect(kube.requests.map((r) => [r.verb, r.name, r.status])).toEqual([['get', 'groups', 200]]);
  });

  it('is what groupsSourceFromUrl gives for k8s://, and a malformed reference fails before any request', async () => {
    kube.putConfigMap(NS, 'groups', { 'groups.yml': groupsYaml('one.dev') });
    const s = groupsSourceFromUrl(REF);
    expect(s).toBeInstanceOf(K8sGroupsSource);
    expect(hostOf(await s.load())).toBe('one.dev');
    s.close();
    const error = (() => {
      try {
        groupsSourceFromUrl('k8s://configmap/reverst/groups');
      } catch (err) {
        return err as KubernetesError;
      }
    })();
    expect(error).toBeInstanceOf(KubernetesError);
    expect(error?.code).toBe('ERR_K8S_REF_INVALID');
    expect(error?.message).toBe('k8s://configmap/reverst/groups: needs four parts (expected k8s://configmap/<namespace>/<name>/<key>)');
    expect(() => groupsSourceFromUrl('k8s://secret/reverst/groups/groups.yml')).toThrow('a Secret cannot be used here');
    expect(kube.requests.length).toBe(1);
  });

  it('names a missing ConfigMap and what to do', async () => {
    const error = await rejection(source().load());
    expect(error).toBeInstanceOf(KubernetesError);
    expect((error as KubernetesError).code).toBe('ERR_K8S_NOT_FOUND');
    expect(error.message).toBe(`${REF}: ConfigMap "groups" not found in namespace "reverst": create it, or fix the reference`);
  });

  it('names a missing key and lists the keys there are', async () => {
    kube.putConfigMap(NS, 'groups', { 'group.yml': groupsYaml('one.dev'), 'b.yml': '' });
    const error = await rejection(source().load());
    expect((error as KubernetesError).code).toBe('ERR_K8S_NOT_FOUND');
    expect(error.message).toBe(`${REF}: ConfigMap reverst/groups has no key "groups.yml" (it has "b.yml", "group.yml"): add the key, or fix the reference`);
  });

  it('reports a parse error with the reference, line, column and field', async () => {
    kube.putConfigMap(NS, 'groups', { 'groups.yml': 'groups:\n  g: { hosts: [a.dev:1] }\n' });
    const error = await rejection(source().load());
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toMatch(new RegExp(`^${REF}:2:16: groups."g".hosts\\[0\\]: "a.dev:1" is not a valid host`));
  });

  it('turns a 403 into one line naming user, verb and object, and the Role to fix', async () => {
    kube.putConfigMap(NS, 'groups', { 'groups.yml': groupsYaml('one.dev') });
    kube.rules = [];
    const error = await rejection(source().load());
    expect((error as KubernetesError).code).toBe('ERR_K8S_FORBIDDEN');
    expect(error.message).toBe(
      `${REF}: forbidden: system:serviceaccount:reverst:reverst may not get configmaps "groups" in namespace "reverst": ` +
        'grant it in the Role (apiGroups: [""], resources: [configmaps], resourceNames: [groups], verbs: [get, list, watch])',
    );
    expect(error.message).not.toContain('\n');
    expect(ERROR_CODES.ERR_K8S_FORBIDDEN).toBeTruthy();
  });

  it('clips what a proxy in front of the API server answers instead of a Status (an HTML page)', async () => {
    const page = `<html><body>${'<p>bad gateway</p>\n'.repeat(5_000)}</body></html>`;
    const proxy = await startHttpServer((_req, res) => res.writeHead(502, { 'content-type': 'text/html' }).end(page));
    const kubeconfig = join(tempDir('reverst-kubeconfig-'), 'kubeconfig');
    const config = (await readFile(kube.kubeconfigPath, 'utf8')).replace(/server: \S+/, `server: ${proxy.url}`);
    // The client refuses plain http unless told not to verify TLS.
    await writeFile(kubeconfig, config.replace(/certificate-authority-data: \S+/, 'insecure-skip-tls-verify: true'));
    process.env.KUBECONFIG = kubeconfig;
    const error = await rejection(source().load());
    expect((error as KubernetesError).code).toBe('ERR_K8S_API');
    expect(error.message).toMatch(new RegExp(`^${REF}: get .* answered 502: <html><body><p>bad gateway</p> .*… \\(\\d+ more characters\\)$`));
    expect(error.message.length).toBeLessThan(600);
  });

  it('says when there is no kube config at all, or it cannot be read', async () => {
    const home = await mkdtemp(join(tmpdir(), 'reverst-home-'));
    const savedHome = process.env.HOME;
    try {
      process.env.KUBECONFIG = '';
      process.env.HOME = home;
      const none = await rejection(source().load());
      expect((none as KubernetesError).code).toBe('ERR_K8S_NO_CONFIG');
      expect(none.message).toBe(
        `${REF}: no Kubernetes config: set KUBECONFIG to a kubeconfig file, or run in a pod with a service account (in-cluster config)`,
      );
      process.env.KUBECONFIG = join(home, 'missing');
      const missing = await rejection(source().load());
      expect((missing as KubernetesError).code).toBe('ERR_K8S_NO_CONFIG');
      expect(missing.message).toMatch(new RegExp(`^${REF}: cannot load KUBECONFIG=${join(home, 'missing')}: ENOENT`));
    } finally {
      process.env.HOME = savedHome;
      await rm(home, { recursive: true, force: true });
    }
  });

  it('says which API server it cannot reach', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'reverst-kubeconfig-'));
    const copy = join(dir, 'kubeconfig');
    await writeFile(copy, await readFile(kube.kubeconfigPath));
    await kube.close();
    process.env.KUBECONFIG = copy;
    try {
      const error = await rejection(source().load());
      expect((error as KubernetesError).code).toBe('ERR_K8S_API');
      expect(error.message).toBe(`${REF}: cannot reach the Kubernetes API at ${kube.url}: ECONNREFUSED`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('K8sGroupsSource: watch', () => {
  async function watching(host = 'one.dev') {
    kube.putConfigMap(NS, 'groups', { 'groups.yml': groupsYaml(host) });
    const s = source();
    const initial = await s.load();
    const events = watchEvents(s);
    await eventually(() => expect(kube.openWatches).toBe(1), 10_000);
    return { s, initial, ...events };
  }

  it('lists by name, then watches from the list resourceVersion with bookmarks', async () => {
    const { initial } = await watching();
    expect(hostOf(initial)).toBe('one.dev');
    const [list] = listRequests();
    const [watch] = watchRequests();
    expect(list).toMatchObject({ fieldSelector: 'metadata.name=groups', status: 200 });
    expect(watch).toMatchObject({ fieldSelector: 'metadata.name=groups', allowWatchBookmarks: true, status: 200 });
    expect(watch!.resourceVersion).toMatch(/^\d+$/);
  });

  it('reloads on an update', async () => {
    const { nextConfig } = await watching();
    kube.putConfigMap(NS, 'groups', { 'groups.yml': groupsYaml('two.dev') });
    expect(hostOf((await nextConfig()).config)).toBe('two.dev');
    kube.putConfigMap(NS, 'groups', { 'groups.yml': groupsYaml('three.dev') });
    expect(hostOf((await nextConfig()).config)).toBe('three.dev');
  });

  it('keeps the last good config through a bad update, a missing key and a delete, says so in its status, and recovers', async () => {
    const { s, nextError, nextConfig } = await watching();
    expect(s.status()).toEqual({ ready: true, detail: `following ${REF}` });
    kube.putConfigMap(NS, 'groups', { 'groups.yml': 'groups:\n  g: { hosts: [bad:1] }\n' });
    expect((await nextError()).message).toMatch(new RegExp(`^${REF}:2:16: groups."g".hosts\\[0\\]`));

    kube.putConfigMap(NS, 'groups', { 'other.yml': groupsYaml('x.dev') });
    expect((await nextError()).message).toBe(
      `${REF}: ConfigMap reverst/groups has no key "groups.yml" (it has "other.yml"): add the key, or fix the reference`,
    );

    kube.remove('configmaps', NS, 'groups');
    const deleted = await nextError();
    expect((deleted as KubernetesError).code).toBe('ERR_K8S_NOT_FOUND');
    expect(deleted.message).toBe(`${REF}: ConfigMap "groups" was deleted from namespace "reverst": create it, or fix the reference`);
    expect(s.status()).toEqual({ ready: true, detail: `${deleted.message}; serving the last good config` });

    kube.putConfigMap(NS, 'groups', { 'groups.yml': groupsYaml('back.dev') });
    expect(hostOf((await nextConfig()).config)).toBe('back.dev');
    expect(s.status()).toEqual({ ready: true, detail: `following ${REF}` });
  });

  it('resumes from the last resourceVersion after the connection drops, without relisting', async () => {
    const { nextConfig } = await watching();
    kube.putConfigMap(NS, 'groups', { 'groups.yml': groupsYaml('two.dev') });
    const seen = (await nextConfig()).config;
    expect(hostOf(seen)).toBe('two.dev');
    const rvAfterUpdate = String(Number(watchRequests()[0]!.resourceVersion) + 1);

    expect(kube.dropWatches()).toBe(1);
    await eventually(() => expect(watchRequests()).toHaveLength(2), 10_000);
    expect(watchRequests()[1]!.resourceVersion).toBe(rvAfterUpdate);
    expect(listRequests()).toHaveLength(1);

    await eventually(() => expect(kube.openWatches).toBe(1), 10_000);
    kube.putConfigMap(NS, 'groups', { 'groups.yml': groupsYaml('three.dev') });
    expect(hostOf((await nextConfig()).config)).toBe('three.dev');
  });

  it('rides out an API server restart: says it cannot reach it, then catches up with what changed meanwhile', async () => {
    const { nextError, nextConfig } = await watching();
    await kube.stop();
    expect((await nextError()).message).toBe(`${REF}: cannot reach the Kubernetes API at ${kube.url}: ECONNREFUSED`);
    kube.putConfigMap(NS, 'groups', { 'groups.yml': groupsYaml('while-down.dev') });
    await kube.resume();
    const { config, errors } = await nextConfig();
    expect(hostOf(config)).toBe('while-down.dev');
    for (const e of errors) expect((e as KubernetesError).code).toBe('ERR_K8S_API');
  });

  it('honours BOOKMARKs: resumes from the bookmark, so a compaction since costs no relist', async () => {
    const { nextConfig } = await watching();
    const firstRv = watchRequests()[0]!.resourceVersion;
    // Other objects change (our watch sees none of it), history is compacted, then a bookmark
    // carries the current resourceVersion and the server ends the watch (its timeout is up).
    kube.touchOther(NS);
    kube.touchOther(NS);
    kube.compact();
    kube.bookmark({ end: true });
    await eventually(() => expect(watchRequests()).toHaveLength(2), 10_000);
    const resumed = watchRequests()[1]!;
    expect(Number(resumed.resourceVersion)).toBe(Number(firstRv) + 2);
    expect(resumed.status).toBe(200);
    expect(listRequests()).toHaveLength(1);

    await eventually(() => expect(kube.openWatches).toBe(1), 10_000);
    kube.putConfigMap(NS, 'groups', { 'groups.yml': groupsYaml('two.dev') });
    expect(hostOf((await nextConfig()).config)).toBe('two.dev');
    expect(listRequests()).toHaveLength(1);
  });

  for (const mode of ['event', 'http'] as const) {
    it(`relists after 410 Gone (${mode === 'event' ? 'an ERROR event with a 410 Status' : 'an HTTP 410'}) and catches the change it missed`, async () => {
      kube.expiredWatch = mode;
      const { nextConfig } = await watching();
      const firstRv = watchRequests()[0]!.resourceVersion;
      // A change the watch never delivers, then history is compacted past our resourceVersion.
      kube.putConfigMap(NS, 'groups', { 'groups.yml': groupsYaml('missed.dev') }, { silent: true });
      kube.compact();
      kube.dropWatches();
      const { config, errors } = await nextConfig();
      expect(hostOf(config)).toBe('missed.dev');
      expect(errors).toEqual([]);
      const expired = watchRequests()[1]!;
      expect(expired.resourceVersion).toBe(firstRv);
      expect(expired.status).toBe(mode === 'event' ? 200 : 410);
      expect(listRequests()).toHaveLength(2);
      await eventually(() => expect(kube.openWatches).toBe(1), 10_000);
      expect(Number(watchRequests().at(-1)!.resourceVersion)).toBeGreaterThan(Number(firstRv));
    });
  }

  it('reports a 403 on list or watch with what to grant, keeps the config, and recovers once granted', async () => {
    kube.putConfigMap(NS, 'groups', { 'groups.yml': groupsYaml('one.dev') });
    kube.rules = role(['get']);
    const s = source();
    await s.load();
    const { nextError, nextConfig } = watchEvents(s);
    const listRefused = await nextError();
    expect((listRefused as KubernetesError).code).toBe('ERR_K8S_FORBIDDEN');
    expect(listRefused.message).toBe(
      `${REF}: forbidden: system:serviceaccount:reverst:reverst may not list configmaps "groups" in namespace "reverst": ` +
        'grant it in the Role (apiGroups: [""], resources: [configmaps], resourceNames: [groups], verbs: [get, list, watch])',
    );

    kube.rules = role(['get', 'list']);
    // The watch response of a 403 carries no body the client keeps: the message cannot name the user.
    let watchRefused = await nextError();
    while (watchRefused.message.includes('may not list')) watchRefused = await nextError();
    expect(watchRefused.message).toBe(
      `${REF}: forbidden: this client may not watch configmaps "groups" in namespace "reverst": ` +
        'grant it in the Role (apiGroups: [""], resources: [configmaps], resourceNames: [groups], verbs: [get, list, watch])',
    );
    expect(s.status().detail).toMatch(/forbidden: .* may not (list|watch) configmaps "groups".*; serving the last good config$/);

    kube.rules = role();
    await eventually(() => expect(kube.openWatches).toBe(1), 10_000);
    kube.putConfigMap(NS, 'groups', { 'groups.yml': groupsYaml('two.dev') });
    const { config, errors } = await nextConfig();
    expect(hostOf(config)).toBe('two.dev');
    for (const e of errors) expect((e as KubernetesError).code).toBe('ERR_K8S_FORBIDDEN');
    expect(s.status()).toEqual({ ready: true, detail: `following ${REF}` });
  });

  it('the stand-in refuses a list by name without the name selector, as kube-apiserver does', async () => {
    const config = new KubeConfig();
    config.loadFromFile(kube.kubeconfigPath);
    const core = config.makeApiClient(CoreV1Api);
    await expect(core.listNamespacedConfigMap({ namespace: NS })).rejects.toMatchObject({ code: 403 });
    await expect(core.listNamespacedConfigMap({ namespace: NS, fieldSelector: 'metadata.name=groups' })).resolves.toMatchObject({ items: [] });
  });

  it('reloads when a Secret its token path names changes, and keeps the config while it is gone', async () => {
    kube.putSecret(NS, 'tokens', { token: 'one' });
    kube.putConfigMap(NS, 'groups', {
      'groups.yml': 'groups:\n  g:\n    hosts: [g.dev]\n    authentication:\n      bearer: { tokenPath: "k8s://secret/reverst/tokens/token" }\n',
    });
    const s = source();
    expect((await s.load()).groups.get('g')!.authentication.bearer!.hashedToken).toBe(sha256('one'));
    const { nextConfig, nextError } = watchEvents(s);
    await eventually(() => expect(kube.openWatches).toBe(2), 10_000);
    expect(
      watchRequests()
        .map((r) => `${r.resource}:${r.fieldSelector}`)
        .sort(),
    ).toEqual(['configmaps:metadata.name=groups', 'secrets:metadata.name=tokens']);

    kube.putSecret(NS, 'tokens', { token: 'two' });
    expect((await nextConfig()).config.groups.get('g')!.authentication.bearer!.hashedToken).toBe(sha256('two'));

    kube.remove('secrets', NS, 'tokens');
    expect((await nextError()).message).toBe(
      `${REF}:5:28: groups."g".authentication.bearer.tokenPath: k8s://secret/reverst/tokens/token: ` +
        'Secret "tokens" not found in namespace "reverst": create it, or fix the reference',
    );

    kube.putSecret(NS, 'tokens', { token: 'three' });
    expect((await nextConfig()).config.groups.get('g')!.authentication.bearer!.hashedToken).toBe(sha256('three'));
  });

  it('ends its watches on close', async () => {
    const { s } = await watching();
    s.close();
    await eventually(() => expect(kube.openWatches).toBe(0), 10_000);
  });
});
