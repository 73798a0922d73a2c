/**
 * The only module that talks to the Kubernetes API (through @kubernetes/client-node): the kube
 * config (KUBECONFIG, ~/.kube/config or in-cluster), get / list / watch of one named ConfigMap or
 * Secret, and API failures turned into one-line `KubernetesError`s that say what to fix.
 * The client library is imported on first use, so a node that never names a `k8s://` object
 * never loads it.
 */
import type { CoreV1Api, KubeConfig, Watch } from '@kubernetes/client-node';
import { clip } from '../log-limits.js';
import { describeObject, KUBE_KINDS, KubernetesError, notFound, type KubeObject, type KubeObjectRef } from './k8s-ref.js';

/** Of what an API server (or a proxy in front of it) says, as much as a message needs: an HTML error page is not one. */
const MAX_DETAIL = 300;

export type KubeVerb = 'get' | 'list' | 'watch';

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface WatchRequest {
  resourceVersion: string;
  /** Asked of the API server, which ends the watch after this long. */
  timeoutSeconds: number;
}

export interface KubeApi {
  /** The API server's URL, for messages. */
  readonly server: string;
  get(ref: KubeObjectRef): Promise<KubeObject>;
  /** Lists just this object (a fieldSelector on its name, which RBAC can grant by name). */
  list(ref: KubeObjectRef): Promise<{ object: KubeObject | undefined; resourceVersion: string }>;
  /**
   * Watches just this object from `resourceVersion`, bookmarks on. `onDone` gets the reason the
   * watch ended: null when the server closed it, an error otherwise (a `statusCode` on an HTTP
   * refusal). Resolves once the request is under way; `abort` ends it without calling `onDone`.
   */
  watch(
    ref: KubeObjectRef,
    request: WatchRequest,
    onEvent: (type: WatchEventType, object: unknown) => void,
    onDone: (error: unknown) => void,
  ): Promise<{ abort(): void }>;
}

// One client per kube config: a process with many references shares it.
const clients = new Map<string, Promise<KubeApi>>();

/** The API client for the kube config in force now (KUBECONFIG, ~/.kube/config or in-cluster). */
export function kubeApi(): Promise<KubeApi> {
  const key = process.env.KUBECONFIG ?? '';
  let client = clients.get(key);
  if (!client) {
    client = connect();
    clients.set(key, client);
    // A missing config may be fixed later: do not remember the failure.
    client.catch(() => clients.delete(key));
  }
  return client;
}

/** `kubeApi()`, with a failure to find a kube config naming the reference that needed one. */
export async function kubeApiFor(url: string): Promise<KubeApi> {
  try {
    return await kubeApi();
  } catch (err) {
    throw err instanceof KubernetesError ? new KubernetesError(err.code, `${url}: ${err.message}`, { cause: err.cause }) : err;
  }
}

async function connect(): Promise<KubeApi> {
  const k8s = await import('@kubernetes/client-node');
  const config = new k8s.KubeConfig();
  try {
    config.loadFromDefault();
  } catch (err) {
    const from = process.env.KUBECONFIG ? `KUBECONFIG=${process.env.KUBECONFIG}` : 'the default kube config';
    throw new KubernetesError('ERR_K8S_NO_CONFIG', `cannot load ${from}: ${oneLine((err as Error).message)}`, { cause: err });
  }
  checkConfig(config);
  const server = config.getCurrentCluster()!.server;
  return new ClientNodeApi(server, config.makeApiClient(k8s.CoreV1Api), new k8s.Watch(config));
}

/** loadFromDefault() falls back to http://localhost:8080 when it finds nothing: say what is missing instead. */
function checkConfig(config: KubeConfig): void {
  const cluster = config.getCurrentCluster();
  const fallback = config.currentContext === 'loaded-context' && cluster?.server === 'http://localhost:8080';
  if (!cluster || fallback) {
    throw new KubernetesError(
      'ERR_K8S_NO_CONFIG',
      'no Kubernetes config: set KUBECONFIG to a kubeconfig file, or run in a pod with a service account (in-cluster config)',
    );
  }
  if (config.currentContext === 'inClusterContext' && !process.env.KUBERNETES_SERVICE_HOST) {
    throw new KubernetesError(
      'ERR_K8S_NO_CONFIG',
      'a service account token is mounted but KUBERNETES_SERVICE_HOST is not set: run in a pod, or set KUBECONFIG',
    );
  }
}

class ClientNodeApi implements KubeApi {
  constructor(
    readonly server: string,
    private readonly core: CoreV1Api,
    private readonly watcher: Watch,
  ) {}

  async get(ref: KubeObjectRef): Promise<KubeObject> {
    const { namespace, name } = ref;
    try {
      return ref.kind === 'configmap'
        ? await this.core.readNamespacedConfigMap({ namespace, name })
        : await this.core.readNamespacedSecret({ namespace, name });
    } catch (err) {
      throw apiError(err, ref, 'get', this.server);
    }
  }

  async list(ref: KubeObjectRef): Promise<{ object: KubeObject | undefined; resourceVersion: string }> {
    const request = { namespace: ref.namespace, fieldSelector: nameSelector(ref) };
    try {
      const list = ref.kind === 'configmap' ? await this.core.listNamespacedConfigMap(request) : await this.core.listNamespacedSecret(request);
      const items = list.items as KubeObject[];
      return { object: items.find((item) => item.metadata?.name === ref.name), resourceVersion: list.metadata?.resourceVersion ?? '' };
    } catch (err) {
      throw apiError(err, ref, 'list', this.server);
    }
  }

  async watch(
    ref: KubeObjectRef,
    request: WatchRequest,
    onEvent: (type: WatchEventType, object: unknown) => void,
    onDone: (error: unknown) => void,
  ): Promise<{ abort(): void }> {
    let aborted = false;
    const path = `/api/v1/namespaces/${encodeURIComponent(ref.namespace)}/${KUBE_KINDS[ref.kind].plural}`;
    const query = {
      fieldSelector: nameSelector(ref),
      resourceVersion: request.resourceVersion,
      allowWatchBookmarks: true,
      timeoutSeconds: request.timeoutSeconds,
    };
    const controller = await this.watcher.watch(
      path,
      query,
      (type, object) => {
        if (!aborted) onEvent(type as WatchEventType, object);
      },
      (error) => {
        if (!aborted) onDone(error);
      },
    );
    return {
      abort: () => {
        aborted = true;
        controller.abort();
      },
    };
  }
}

function nameSelector(ref: KubeObjectRef): string {
  return `metadata.name=${ref.name}`;
}

/** A Status object, as the API server sends in error bodies and watch ERROR events. */
interface KubeStatus {
  code?: number;
  message?: string;
  reason?: string;
}

/** The HTTP status of a failed call (ApiException `code`, Watch `statusCode`, or a Status object). */
export function statusOf(error: unknown): number | undefined {
  const e = error as { code?: unknown; statusCode?: unknown } | null;
  if (typeof e?.statusCode === 'number') return e.statusCode;
  if (typeof e?.code === 'number') return e.code;
  return undefined;
}

/** Turns whatever the client threw (or a watch's ERROR Status) into a one-line KubernetesError. */
export function apiError(error: unknown, ref: KubeObjectRef & { url?: string }, verb: KubeVerb, server: string): KubernetesError {
  if (error instanceof KubernetesError) return error;
  const url = ref.url ?? `k8s://${ref.kind}/${ref.namespace}/${ref.name}`;
  const { plural } = KUBE_KINDS[ref.kind];
  const status = statusOf(error);
  const detail = statusMessage(error);
  const options = { cause: error };
  if (status === 404 && verb === 'get') return notFound(ref, url);
  if (status === 403) {
    // The API server names the user in its message: `User "system:serviceaccount:ns:sa" cannot ...`.
    const user = /User "([^"]+)"/.exec(detail ?? '')?.[1];
    return new KubernetesError(
      'ERR_K8S_FORBIDDEN',
      `${url}: forbidden: ${user ?? 'this client'} may not ${verb} ${plural} "${ref.name}" in namespace "${ref.namespace}": ` +
        `grant it in the Role (apiGroups: [""], resources: [${plural}], resourceNames: [${ref.name}], verbs: [get, list, watch])`,
      { status, ...options },
    );
  }
  if (status === 401) {
    return new KubernetesError(
      'ERR_K8S_API',
      `${url}: the Kubernetes API at ${server} refused the credentials (401 Unauthorized): check the user in the kube config, or the pod's service account token`,
      { status, ...options },
    );
  }
  if (status !== undefined) {
    return new KubernetesError(
      'ERR_K8S_API',
      `${url}: ${verb} ${describeObject(ref)}: the Kubernetes API at ${server} answered ${status}${detail ? `: ${detail}` : ''}`,
      { status, ...options },
    );
  }
  // No HTTP answer at all: refused, reset, TLS or DNS trouble.
  const e = error as { code?: unknown; message?: unknown; cause?: { code?: unknown } } | null;
  const why = [e?.code, e?.cause?.code].find((c) => typeof c === 'string') ?? oneLine(String(e?.message ?? error));
  return new KubernetesError('ERR_K8S_API', `${url}: cannot reach the Kubernetes API at ${server}: ${why}`, options);
}

function statusMessage(error: unknown): string | undefined {
  const e = error as { body?: unknown; message?: unknown } | null;
  let status: KubeStatus | undefined;
  if (typeof e?.body === 'string') {
    try {
      status = JSON.parse(e.body) as KubeStatus;
    } catch {
      return oneLine(e.body) || undefined;
    }
  } else if (e && typeof e.body === 'object') status = e.body as KubeStatus;
  else if (e && typeof (e as KubeStatus).message === 'string' && typeof (e as KubeStatus).code === 'number') status = e as KubeStatus;
  return status?.message ? oneLine(status.message) : undefined;
}

function oneLine(text: string): string {
  return clip(text.replace(/\s*\n\s*/g, ' ').trim(), MAX_DETAIL);
}
