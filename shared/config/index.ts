export * from './groups.js';
export { matchHost, hostFromHeader, normalizeHostname } from './hosts.js';
export { parseDuration } from './duration.js';
export { parseSize, SIZE_EXAMPLES } from './size.js';
export { FileGroupsSource, fileTokenReader, loadGroupsFile, DEFAULT_WATCH_DEBOUNCE_MS } from './file-source.js';
export {
  groupsSourceFromUrl,
  groupsSourceSchemes,
  GROUPS_SOURCE_FLAGS,
  registerGroupsSource,
  type GroupsSource,
  type GroupsSourceFactory,
  type GroupsSourceOptions,
  type GroupsSourceStatus,
} from './source.js';
export { ControlPlaneError, HttpGroupsSource, DEFAULT_POLL_WAIT_MS, type HttpGroupsSourceOptions } from './http-source.js';
export { K8sGroupsSource, type K8sGroupsSourceOptions } from './k8s-source.js';
export { isKubeRef, KubernetesError, parseKubeRef, type KubeRef } from './k8s-ref.js';
export { readSecretBytes, readSecretRef, type SecretRefOptions } from './secret-ref.js';
