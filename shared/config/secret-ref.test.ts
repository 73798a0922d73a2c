import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { eventually } from '../../test/contract/eventually.js';
import { useCleanup } from '../../test/harness/index.js';
import { startKubeApiServer, type KubeApiServer } from '../../test/harness/kube-apiserver.js';
import { watchEvents } from '../../test/harness/source-events.js';
import { ConfigError } from '../errors.js';
import { FileGroupsSource, loadGroupsFile } from './file-source.js';
import { KubernetesError } from './k8s-ref.js';
import { readSecretBytes, readSecretRef } from './secret-ref.js';

useCleanup();

const NS = 'reverst';
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

let kube: KubeApiServer;
let dir: string;
const savedKubeconfig = process.env.KUBECONFIG;

beforeEach(async () => {
  kube = await startKubeApiServer();
  process.env.KUBECONFIG = kube.kubeconfigPath;
  dir = await mkdtemp(join(tmpdir(), 'reverst-secret-ref-'));
});
afterEach(async () => {
  if (savedKubeconfig === undefined) delete process.env.KUBECONFIG;
  else process.env.KUBECONFIG = savedKubeconfig;
  await rm(dir, { recursive: true, force: true });
});

async function rejection(promise: Promise<unknown>): Promise<Error> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: Error) => err,
  );
}

describe('readSecretRef', () => {
  it('reads a file path relative to baseDir, as before', async () => {
    await writeFile(join(dir, 'token'), 'from-file\n');
    expect(await readSecretRef('token', { baseDir: dir })).toBe('from-file\n');
    expect(kube.requests).toEqual([]);
  });

  it('reads one key of a Secret, decoded, with a get on that Secret alone', async () => {
    kube.putSecret(NS, 'tokens', { token: 'from-secret\n', other: 'x' });
    kube.rules = [{ resource: 'secrets', namespace: NS, resourceNames: ['tokens'], verbs: ['get'] }];
    expect(await readSecretRef('k8s://secret/reverst/tokens/token')).toBe('from-secret\n');
    const pem = '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n';
    kube.putSecret(NS, 'tls', { 'tls.key': pem });
    kube.rules = undefined;
    expect((await readSecretBytes('k8s://secret/reverst/tls/tls.key')).toString()).toBe(pem);
    expect(kube.requests.map((r) => [r.verb, r.resource, r.name])).toEqual([
      ['get', 'secrets', 'tokens'],
      ['get', 'secrets', 'tls'],
    ]);
  });

  it('names a missing Secret, a missing key and a refusal, each in one line', async () => {
    const missing = await rejection(readSecretRef('k8s://secret/reverst/tokens/token'));
    expect(missing).toBeInstanceOf(KubernetesError);
    expect(missing.message).toBe('k8s://secret/reverst/tokens/token: Secret "tokens" not found in namespace "reverst": create it, or fix the reference');

    kube.putSecret(NS, 'tokens', { a: '1' });
    const key = await rejection(readSecretRef('k8s://secret/reverst/tokens/token'));
    expect(key.message).toBe('k8s://secret/reverst/tokens/token: Secret reverst/tokens has no key "token" (it has "a"): add the key, or fix the reference');

    kube.rules = [{ resource: 'secrets', namespace: NS, resourceNames: ['other'], verbs: ['get'] }];
    const refused = await rejection(readSecretRef('k8s://secret/reverst/tokens/a'));
    expect((refused as KubernetesError).code).toBe('ERR_K8S_FORBIDDEN');
    expect(refused.message).toBe(
      'k8s://secret/reverst/tokens/a: forbidden: system:serviceaccount:reverst:reverst may not get secrets "tokens" in namespace "reverst": ' +
        'grant it in the Role (apiGroups: [""], resources: [secrets], resourceNames: [tokens], verbs: [get, list, watch])',
    );
  });

  it('refuses a ConfigMap reference where a secret is expected, without asking the API', async () => {
    const error = await rejection(readSecretRef('k8s://configmap/reverst/groups/token'));
    expect((error as KubernetesError).code).toBe('ERR_K8S_REF_INVALID');
    expect(kube.requests).toEqual([]);
  });
});

describe('token paths in groups.yml', () => {
  const groupsWith = (bearer: string) => `groups:\n  g:\n    hosts: [g.dev]\n    authentication:\n      bearer: { ${bearer} }\n`;

  it('read tokenPath and hashedTokenPath from Secrets', async () => {
    kube.putSecret(NS, 'tokens', { plain: 'tok\n', hashed: `${sha256('other')}\n` });
    await writeFile(join(dir, 'a.yml'), groupsWith('tokenPath: "k8s://secret/reverst/tokens/plain"'));
    await writeFile(join(dir, 'b.yml'), groupsWith('hashedTokenPath: "k8s://secret/reverst/tokens/hashed"'));
    expect((await loadGroupsFile(join(dir, 'a.yml'))).groups.get('g')!.authentication.bearer!.hashedToken).toBe(sha256('tok'));
    expect((await loadGroupsFile(join(dir, 'b.yml'))).groups.get('g')!.authentication.bearer!.hashedToken).toBe(sha256('other'));
  });

  it('report a Secret that cannot be read at the field that names it', async () => {
    await writeFile(join(dir, 'groups.yml'), groupsWith('tokenPath: "k8s://secret/reverst/tokens/plain"'));
    const error = await rejection(loadGroupsFile(join(dir, 'groups.yml')));
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toBe(
      `${join(dir, 'groups.yml')}:5:28: groups."g".authentication.bearer.tokenPath: k8s://secret/reverst/tokens/plain: ` +
        'Secret "tokens" not found in namespace "reverst": create it, or fix the reference',
    );
  });

  it('a watched groups file reloads when its Secret changes, and keeps the config while the Secret is gone', async () => {
    kube.putSecret(NS, 'tokens', { plain: 'one' });
    await mkdir(join(dir, 'conf'));
    const path = join(dir, 'conf', 'groups.yml');
    await writeFile(path, groupsWith('tokenPath: "k8s://secret/reverst/tokens/plain"'));
    const source = new FileGroupsSource(path, { debounceMs: 20 });
    try {
      expect((await source.load()).groups.get('g')!.authentication.bearer!.hashedToken).toBe(sha256('one'));
      const { nextConfig, nextError } = watchEvents(source);
      await eventually(() => expect(kube.openWatches).toBe(1), 10_000);

      kube.putSecret(NS, 'tokens', { plain: 'two' });
      expect((await nextConfig()).config.groups.get('g')!.authentication.bearer!.hashedToken).toBe(sha256('two'));

      kube.remove('secrets', NS, 'tokens');
      expect((await nextError()).message).toContain('Secret "tokens" not found in namespace "reverst"');
      kube.putSecret(NS, 'tokens', { plain: 'three' });
      expect((await nextConfig()).config.groups.get('g')!.authentication.bearer!.hashedToken).toBe(sha256('three'));

      // Once the file no longer names the Secret, the Secret is let go.
      await writeFile(`${path}.tmp`, groupsWith('token: "inline"'));
      await rename(`${path}.tmp`, path);
      expect((await nextConfig()).config.groups.get('g')!.authentication.bearer!.hashedToken).toBe(sha256('inline'));
      await eventually(() => expect(kube.openWatches).toBe(0), 10_000);
    } finally {
      source.close();
    }
  });
});
