/**
 * A Kubernetes API server stand-in, for the k8s:// sources: no real API server runs on our
 * machines. It serves, over HTTPS with a bearer token, the part of the core/v1 API that
 * @kubernetes/client-node uses for ConfigMaps and Secrets, the way kube-apiserver answers it:
 *
 * - `GET …/namespaces/<ns>/<plural>/<name>`: the object, or a 404 Status;
 * - `GET …/namespaces/<ns>/<plural>?fieldSelector=metadata.name=<name>`: a List with the
 *   collection's resourceVersion;
 * - the same with `watch=true&resourceVersion=<rv>`: a chunked stream of JSON event lines
 *   (ADDED, MODIFIED, DELETED, BOOKMARK when asked for), replayed from `rv`; an `rv` older than
 *   the last compaction gets an ERROR event carrying a 410 Status (or, in `expiredWatch: 'http'`
 *   mode, an HTTP 410);
 * - RBAC as the real authorizer applies a Role: a rule with `resourceNames` grants get on those
 *   names, and list/watch only to requests whose fieldSelector is `metadata.name=<one of them>`;
 *   anything else is a 403 Status naming user, verb, resource and namespace.
 *
 * Tests drive it (put, remove, compact, bookmark, dropWatches) and read its request log.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { ServerResponse } from 'node:http';
import { makeCa, makeServerCert } from './certs.js';
import { onCleanup } from './cleanup.js';

export type KubePlural = 'configmaps' | 'secrets';
export type KubeVerb = 'get' | 'list' | 'watch';
type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

/** One rule of a Role: verbs on a resource in a namespace, optionally only on some names. */
export interface KubeRule {
  resource: KubePlural;
  namespace: string;
  verbs: KubeVerb[];
  resourceNames?: string[];
}

export interface KubeRequest {
  verb: KubeVerb | 'unknown';
  resource: string;
  namespace: string;
  name?: string | undefined;
  fieldSelector?: string | undefined;
  resourceVersion?: string | undefined;
  allowWatchBookmarks: boolean;
  /** The HTTP status the stand-in answered. */
  status: number;
}

interface StoredObject {
  apiVersion: 'v1';
  kind: 'ConfigMap' | 'Secret';
  metadata: { name: string; namespace: string; resourceVersion: string; uid: string; creationTimestamp: string };
  data: Record<string, string>;
}

interface HistoryEntry {
  rv: number;
  type: EventType;
  object: StoredObject;
}

interface Watcher {
  res: ServerResponse;
  resource: KubePlural;
  namespace: string;
  /** The name a `metadata.name=` fieldSelector asked for. */
  name: string | undefined;
  bookmarks: boolean;
}

export interface KubeApiServer {
  readonly url: string;
  /** A kubeconfig file (server, CA, token) pointing at this stand-in. */
  readonly kubeconfigPath: string;
  /** The user the token stands for, as the API server names it in 403s. */
  readonly user: string;
  /** Every request so far, oldest first. */
  readonly requests: KubeRequest[];
  /** Creates or replaces a ConfigMap (`data` as text) and tells the watchers, unless `silent`. */
  putConfigMap(namespace: string, name: string, data: Record<string, string>, options?: { silent?: boolean }): string;
  /** Creates or replaces a Secret (`data` as text; stored base64 as the API does) and tells the watchers, unless `silent`. */
  putSecret(namespace: string, name: string, data: Record<string, string>, options?: { silent?: boolean }): string;
  remove(resource: KubePlural, namespace: string, name: string): void;
  /** Forgets history: a watch from any resourceVersion older than the current one is now expired (410). */
  compact(): void;
  /**
   * Sends a BOOKMARK with the current resourceVersion to every watch that asked for bookmarks;
   * with `end`, then ends those streams, as the server does when a watch's timeout is up.
   */
  bookmark(options?: { end?: boolean }): void;
  /** Bumps the resourceVersion through an object no test watches (another object in the cluster changed). */
  touchOther(namespace: string): void;
  /** Cuts every open watch connection without ending the stream (a dropped connection); answers how many. */
  dropWatches(): number;
  /** Stops answering (the port refuses connections, open ones are cut), as an API server that restarts. */
  stop(): Promise<void>;
  /** Answers again on the same port, with the objects and history it had. */
  resume(): Promise<void>;
  /** How many watch streams are open now. */
  readonly openWatches: number;
  /** The Role in force; undefined (the default) allows everything. */
  rules: KubeRule[] | undefined;
  /** How an expired resourceVersion is answered on a watch: an ERROR event (as kube-apiserver does) or an HTTP 410. */
  expiredWatch: 'event' | 'http';
  close(): Promise<void>;
}

export async function startKubeApiServer(): Promise<KubeApiServer> {
  const ca = await makeCa();
  const cert = await makeServerCert(ca, { names: ['localhost', '127.0.0.1'] });
  const token = randomBytes(16).toString('hex');
  const user = 'system:serviceaccount:reverst:reverst';

  const objects = new Map<string, StoredObject>();
  let history: HistoryEntry[] = [];
  let revision = 100;
  let oldestRv = 0;
  const watchers = new Set<Watcher>();
  const sockets = new Set<Socket>();
  const requests: KubeRequest[] = [];

  const keyOf = (resource: string, namespace: string, name: string) => `${resource}/${namespace}/${name}`;

  const notify = (type: EventType | 'BOOKMARK', object: StoredObject | { kind: string; apiVersion: string; metadata: { resourceVersion: string } }) => {
    for (const w of watchers) {
      if (type === 'BOOKMARK') {
        if (w.bookmarks) send(w.res, { type, object: { ...object, kind: w.resource === 'configmaps' ? 'ConfigMap' : 'Secret' } });
        continue;
      }
      const o = object as StoredObject;
      if (matches(w, o)) send(w.res, { type, object: o });
    }
  };

  const matches = (w: Pick<Watcher, 'resource' | 'namespace' | 'name'>, o: StoredObject) =>
    pluralOf(o) === w.resource && o.metadata.namespace === w.namespace && (w.name === undefined || o.metadata.name === w.name);

  const put = (kind: StoredObject['kind'], namespace: string, name: string, data: Record<string, string>, silent: boolean): string => {
    const resource = kind === 'ConfigMap' ? 'configmaps' : 'secrets';
    const key = keyOf(resource, namespace, name);
    const existing = objects.get(key);
    const rv = String(++revision);
    const object: StoredObject = {
      apiVersion: 'v1',
      kind,
      metadata: {
        name,
        namespace,
        resourceVersion: rv,
        uid: existing?.metadata.uid ?? randomBytes(8).toString('hex'),
        creationTimestamp: existing?.metadata.creationTimestamp ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      },
      data: kind === 'Secret' ? Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])) : { ...data },
    };
    objects.set(key, object);
    const type: EventType = existing ? 'MODIFIED' : 'ADDED';
    history.push({ rv: revision, type, object });
    if (!silent) notify(type, object);
    return rv;
  };

  const server = https.createServer({ key: cert.key, cert: cert.cert }, (req, res) => {
    const url = new URL(req.url ?? '/', 'https://stand-in');
    const q = url.searchParams;
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/(configmaps|secrets)(?:\/([^/]+))?$/.exec(url.pathname);
    const watch = q.get('watch') === 'true' || q.get('watch') === '1';
    const record: KubeRequest = {
      verb: !m || req.method !== 'GET' ? 'unknown' : m[3] ? 'get' : watch ? 'watch' : 'list',
      resource: m?.[2] ?? url.pathname,
      namespace: m?.[1] ?? '',
      name: m?.[3],
      fieldSelector: q.get('fieldSelector') ?? undefined,
      resourceVersion: q.get('resourceVersion') ?? undefined,
      allowWatchBookmarks: q.get('allowWatchBookmarks') === 'true',
      status: 200,
    };
    requests.push(record);
    const fail = (status: number, reason: string, message: string, details?: object) => {
      record.status = status;
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code: status }),
      );
    };
    if (req.headers.authorization !== `Bearer ${token}`) return fail(401, 'Unauthorized', 'Unauthorized');
    if (!m || record.verb === 'unknown') return fail(404, 'NotFound', 'the server could not find the requested resource');
    const namespace = decodeURIComponent(m[1]!);
    const resource = m[2] as KubePlural;
    const verb = record.verb as KubeVerb;
    const selected = selectedName(record.fieldSelector);
    if (selected === null) return fail(400, 'BadRequest', `unable to parse requirement: unsupported field selector "${record.fieldSelector}"`);
    const name = m[3] ? decodeURIComponent(m[3]) : selected;

    if (!allowed(api.rules, verb, resource, namespace, m[3] ? name : selected)) {
      const target = m[3] || selected ? `${resource} "${name}"` : resource;
      return fail(
        403,
        'Forbidden',
        `${target} is forbidden: User "${user}" cannot ${verb} resource "${resource}" in API group "" in the namespace "${namespace}"`,
        { ...(name ? { name } : {}), kind: resource },
      );
    }

    if (verb === 'get') {
      const object = objects.get(keyOf(resource, namespace, name!));
      if (!object) return fail(404, 'NotFound', `${resource} "${name}" not found`, { name, kind: resource });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(object));
      return;
    }

    const filter = { resource, namespace, name: selected };
    if (verb === 'list') {
      const items = [...objects.values()].filter((o) => matches(filter, o));
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          kind: resource === 'configmaps' ? 'ConfigMapList' : 'SecretList',
          apiVersion: 'v1',
          metadata: { resourceVersion: String(revision) },
          items,
        }),
      );
      return;
    }

    // watch
    const from = record.resourceVersion;
    const fromRv = from === undefined || from === '' || from === '0' ? undefined : Number(from);
    if (fromRv !== undefined && (!Number.isInteger(fromRv) || fromRv < oldestRv)) {
      const message = `too old resource version: ${from} (${oldestRv})`;
      if (api.expiredWatch === 'http') return fail(410, 'Expired', message);
      res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      record.status = 200;
      send(res, { type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: 'Expired', code: 410 } });
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const watcher: Watcher = { res, ...filter, bookmarks: record.allowWatchBookmarks };
    if (fromRv === undefined) {
      // No resourceVersion: the current state as ADDED events, then what follows.
      for (const o of objects.values()) if (matches(filter, o)) send(res, { type: 'ADDED', object: o });
    } else {
      for (const e of history) if (e.rv > fromRv && matches(filter, e.object)) send(res, { type: e.type, object: e.object });
    }
    watchers.add(watcher);
    const timeoutSeconds = Number(q.get('timeoutSeconds') ?? 0);
    const timer = timeoutSeconds > 0 ? setTimeout(() => res.end(), timeoutSeconds * 1000) : undefined;
    res.on('close', () => {
      clearTimeout(timer);
      watchers.delete(watcher);
    });
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
      server.listen(port, '127.0.0.1');
    });
  await listen(0);
  const { port } = server.address() as AddressInfo;
  const url = `https://127.0.0.1:${port}`;

  const dir = mkdtempSync(path.join(os.tmpdir(), 'reverst-kube-'));
  const kubeconfigPath = path.join(dir, 'kubeconfig');
  writeFileSync(
    kubeconfigPath,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: stand-in',
      '  cluster:',
      `    server: ${url}`,
      `    certificate-authority-data: ${Buffer.from(ca.cert).toString('base64')}`,
      'users:',
      '- name: reverst',
      '  user:',
      `    token: ${token}`,
      'contexts:',
      '- name: stand-in',
      '  context:',
      '    cluster: stand-in',
      '    user: reverst',
      '    namespace: reverst',
      'current-context: stand-in',
      '',
    ].join('\n'),
  );

  let closing: Promise<void> | undefined;
  const api: KubeApiServer = {
    url,
    kubeconfigPath,
    user,
    requests,
    rules: undefined,
    expiredWatch: 'event',
    putConfigMap: (namespace, name, data, options = {}) => put('ConfigMap', namespace, name, data, options.silent ?? false),
    putSecret: (namespace, name, data, options = {}) => put('Secret', namespace, name, data, options.silent ?? false),
    remove(resource, namespace, name) {
      const key = keyOf(resource, namespace, name);
      const existing = objects.get(key);
      if (!existing) return;
      objects.delete(key);
      const object = { ...existing, metadata: { ...existing.metadata, resourceVersion: String(++revision) } };
      history.push({ rv: revision, type: 'DELETED', object });
      notify('DELETED', object);
    },
    compact() {
      oldestRv = revision;
      history = [];
    },
    bookmark(options = {}) {
      notify('BOOKMARK', { kind: '', apiVersion: 'v1', metadata: { resourceVersion: String(revision) } });
      if (options.end) for (const w of watchers) if (w.bookmarks) w.res.end();
    },
    touchOther(namespace) {
      put('ConfigMap', namespace, `unrelated-${revision}`, { x: 'y' }, false);
    },
    dropWatches() {
      let n = 0;
      for (const w of watchers) {
        w.res.socket?.destroy();
        watchers.delete(w);
        n++;
      }
      return n;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        watchers.clear();
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
    resume: () => listen(port),
    get openWatches() {
      return watchers.size;
    },
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
        rmSync(dir, { recursive: true, force: true });
      })),
  };
  onCleanup(api.close);
  return api;
}

function send(res: ServerResponse, event: object): void {
  res.write(`${JSON.stringify(event)}\n`);
}

function pluralOf(o: StoredObject): KubePlural {
  return o.kind === 'ConfigMap' ? 'configmaps' : 'secrets';
}

/** The name in a `metadata.name=<name>` selector; undefined for none, null for one we do not support. */
function selectedName(selector: string | undefined): string | undefined | null {
  if (selector === undefined || selector === '') return undefined;
  const m = /^metadata\.name==?([^,]+)$/.exec(selector);
  return m ? m[1]! : null;
}

/** RBAC as kube-apiserver applies a Role's rules (resourceNames limit list/watch to a name selector). */
function allowed(rules: KubeRule[] | undefined, verb: KubeVerb, resource: KubePlural, namespace: string, name: string | undefined): boolean {
  if (!rules) return true;
  return rules.some(
    (r) =>
      r.resource === resource &&
      r.namespace === namespace &&
      r.verbs.includes(verb) &&
      (r.resourceNames === undefined || (name !== undefined && r.resourceNames.includes(name))),
  );
}
