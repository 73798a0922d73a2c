// Everything, for test files. Plain scripts (bench, demos) import the modules they need directly:
// this index also loads vitest.ts, which only works inside the vitest runner.
export { findBinary } from './binaries.js';
export { onCleanup, pendingCleanups, runCleanups, type CleanupFn } from './cleanup.js';
export {
  DEFAULT_SERVER_NAMES,
  makeCa,
  makeSelfSigned,
  makeServerCert,
  type KeyPair,
  type ServerCertOptions,
} from './certs.js';
export { collect, randomStream, sha256, startHttpServer, type TestHttpServer } from './http.js';
export { launchServer, tcpAnswers, type ServerHandle, type ServerSpec } from './launcher.js';
export {
  DEFAULT_DROP_RATE,
  startLossyRelay,
  type LossyRelay,
  type LossyRelayOptions,
  type RelayCounters,
} from './lossy-relay.js';
export { startNats } from './nats.js';
export { freePort, freePorts, type PortKind } from './ports.js';
export {
  spawnNode,
  spawnProcess,
  type ExitInfo,
  type LineMatcher,
  type ProcessHandle,
  type SpawnOptions,
} from './processes.js';
export { startRedis } from './redis.js';
export { tempDir } from './temp.js';
export { useCleanup } from './vitest.js';
