/**
 * `k8s://configmap/<namespace>/<name>/<key>` and `k8s://secret/<namespace>/<name>/<key>`:
 * one key of one Kubernetes object, as the seed spells it; reading that key out of an object;
 * the one-line errors. No Kubernetes client here, so parsing a reference (at start-up, in a
 * config file) costs nothing.
 */
import { ReverstError, type ReverstErrorOptions } from '../errors.js';

export const K8S_SCHEME = 'k8s://';

export const KUBE_KINDS = {
  configmap: { kind: 'ConfigMap', plural: 'configmaps' },
  secret: { kind: 'Secret', plural: 'secrets' },
} as const;
export type KubeKind = keyof typeof KUBE_KINDS;

/** One named object: what a watch follows and what RBAC grants. */
export interface KubeObjectRef {
  kind: KubeKind;
  namespace: string;
  name: string;
}

/** One key of one object; `url` is the reference as written, for messages. */
export interface KubeRef extends KubeObjectRef {
  key: string;
  url: string;
}

export type KubernetesErrorCode = 'ERR_K8S_REF_INVALID' | 'ERR_K8S_NO_CONFIG' | 'ERR_K8S_NOT_FOUND' | 'ERR_K8S_FORBIDDEN' | 'ERR_K8S_API';

/** Why talking to Kubernetes failed; every message is one line that names the object and what to fix. */
export class KubernetesError extends ReverstError {
  override name = 'KubernetesError';
  declare readonly code: KubernetesErrorCode;
  constructor(code: KubernetesErrorCode, message: string, options: ReverstErrorOptions = {}) {
    super(code, message, options);
  }
}

// Kubernetes' own rules: namespaces are DNS-1123 labels, object names DNS-1123 subdomains,
// ConfigMap and Secret keys letters, digits, '-', '_' and '.'.
const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const KEY = /^[-._a-zA-Z0-9]{1,253}$/;

export function isKubeRef(text: string): boolean {
  return text.slice(0, K8S_SCHEME.length).toLowerCase() === K8S_SCHEME;
}

/** Parses a reference; `expect` limits the kinds allowed where only one makes sense. */
export function parseKubeRef(url: string, expect?: KubeKind): KubeRef {
  const shape = expect ? `k8s://${expect}/<namespace>/<name>/<key>` : 'k8s://configmap/<namespace>/<name>/<key> or k8s://secret/<namespace>/<name>/<key>';
  const fail = (why: string) => new KubernetesError('ERR_K8S_REF_INVALID', `${url}: ${why} (expected ${shape})`);
  if (!isKubeRef(url)) throw fail('not a k8s:// reference');
  const parts = url.slice(K8S_SCHEME.length).split('/');
  if (parts.length !== 4 || parts.some((p) => p === '')) throw fail('needs four parts');
  const [kindText, namespace, name, key] = parts as [string, string, string, string];
  const kind = kindText.toLowerCase();
  if (!Object.hasOwn(KUBE_KINDS, kind)) throw fail(`"${kindText}" is not configmap or secret`);
  if (expect && kind !== expect) throw fail(`a ${KUBE_KINDS[kind as KubeKind].kind} cannot be used here`);
  if (!NAMESPACE.test(namespace)) throw fail(`"${namespace}" is not a valid namespace (lower-case letters, digits and '-')`);
  if (!NAME.test(name)) throw fail(`"${name}" is not a valid object name (lower-case letters, digits, '-' and '.')`);
  if (!KEY.test(key)) throw fail(`"${key}" is not a valid key (letters, digits, '-', '_' and '.')`);
  return { kind: kind as KubeKind, namespace, name, key, url };
}

/** The parts of a ConfigMap or Secret we read (watch events arrive as plain JSON, lists as models). */
export interface KubeObject {
  metadata?: { name?: string | undefined; namespace?: string | undefined; resourceVersion?: string | undefined } | undefined;
  /** ConfigMap: text; Secret: base64. */
  data?: Record<string, string> | undefined;
  /** ConfigMap only: base64. */
  binaryData?: Record<string, string> | undefined;
}

/** The value of one key, as bytes; a missing key is a one-line error listing the keys there are. */
export function readKey(ref: KubeRef, object: KubeObject): Buffer {
  const text = object.data?.[ref.key];
  if (text !== undefined) return ref.kind === 'secret' ? Buffer.from(text, 'base64') : Buffer.from(text, 'utf8');
  const binary = ref.kind === 'configmap' ? object.binaryData?.[ref.key] : undefined;
  if (binary !== undefined) return Buffer.from(binary, 'base64');
  const keys = [...Object.keys(object.data ?? {}), ...Object.keys(object.binaryData ?? {})].sort();
  const has = keys.length > 0 ? `it has ${keys.map((k) => JSON.stringify(k)).join(', ')}` : 'it has no keys';
  throw new KubernetesError('ERR_K8S_NOT_FOUND', `${ref.url}: ${describeObject(ref)} has no key "${ref.key}" (${has}): add the key, or fix the reference`);
}

/** The one-line error for an object that does not exist. */
export function notFound(ref: KubeObjectRef, url: string, how: 'missing' | 'deleted' = 'missing'): KubernetesError {
  const what = `${KUBE_KINDS[ref.kind].kind} "${ref.name}"`;
  const state = how === 'deleted' ? 'was deleted from' : 'not found in';
  return new KubernetesError('ERR_K8S_NOT_FOUND', `${url}: ${what} ${state} namespace "${ref.namespace}": create it, or fix the reference`);
}

/** `ConfigMap reverst/reverst-groups`, for messages. */
export function describeObject(ref: KubeObjectRef): string {
  return `${KUBE_KINDS[ref.kind].kind} ${ref.namespace}/${ref.name}`;
}

/** `k8s://secret/reverst/tokens`: the object without a key, for messages about the object itself. */
export function objectUrl(ref: KubeObjectRef): string {
  return `${K8S_SCHEME}${ref.kind}/${ref.namespace}/${ref.name}`;
}

/** One string per object, for maps and sets. */
export function objectKey(ref: KubeObjectRef): string {
  return `${ref.kind}/${ref.namespace}/${ref.name}`;
}
