import { readFlagFile } from '../shared/flag-file.js';
import { createLogger } from '../shared/log.js';
import { checkKeyPair } from '../shared/pem.js';
import { parseNodeFlags, usage } from './flags.js';
import { startNode, type DataPlaneNode } from './node.js';

/** `reverst [FLAGS]`: run one data-plane node until SIGTERM/SIGINT, then drain and exit. */
export async function runNode(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const flags = parseNodeFlags(argv, env);
  if (flags.help) {
    process.stdout.write(usage());
    return;
  }
  const [key, cert] = await Promise.all([
    readFlagFile(flags.privateKeyPath, '-k/--private-key-path'),
    readFlagFile(flags.certificatePath, '-c/--certificate-path'),
  ]);
  // Named by file here; startNode checks the same for callers of the library.
  checkKeyPair({ pem: key, name: `-k/--private-key-path ${flags.privateKeyPath}` }, { pem: cert, name: `-c/--certificate-path ${flags.certificatePath}` });
  const controlPlaneToken = flags.controlPlaneTokenFile
    ? (await readFlagFile(flags.controlPlaneTokenFile, '--control-plane-token-file')).toString().trim()
    : undefined;
  const clusterSecret = flags.clusterSecretFile
    ? (await readFlagFile(flags.clusterSecretFile, '--cluster-secret-file')).toString().trim()
    : flags.clusterSecret;
  const logger = createLogger({ level: flags.log });
  // Listening before the node starts: a signal that arrives while it starts drains it once
  // started, instead of killing the process with the default action.
  let signals = 0;
  let node: DataPlaneNode | undefined;
  const act = (): void => {
    // The first signal drains; a second one stops at once.
    if (signals === 1) void node?.drain();
    else if (signals > 1) void node?.stop();
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    logger.info(signals === 1 ? 'signal received: draining' : 'signal received again: stopping now', { signal });
    act();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    node = await startNode({
      tunnelAddress: flags.tunnelAddress,
      httpAddress: flags.httpAddress,
      managementAddress: flags.managementAddress,
      serverName: flags.serverName,
      key,
      cert,
      groups: flags.tunnelGroups,
      watchGroups: flags.watchGroups,
      controlPlaneToken,
      groupsCache: flags.groupsCache,
      maxIdleTimeoutMs: flags.maxIdleTimeoutMs,
      keepAlivePeriodMs: flags.keepAlivePeriodMs,
      unresponsiveTimeoutMs: flags.unresponsiveTimeoutMs,
      requestTimeoutMs: flags.requestTimeoutMs,
      maxHeaderSize: flags.maxHeaderSize,
      maxBodySize: flags.maxBodySize,
      drainTimeoutMs: flags.drainTimeoutMs,
      nodeId: flags.nodeId,
      membership: flags.membership,
      membershipNamespace: flags.membershipNamespace,
      membershipTtlMs: flags.membershipTtlMs,
      internalAddress: flags.internalAddress,
      clusterSecret,
      trustedProxies: flags.trustedProxies,
      logger,
    });
    act();
    await node.closed;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}
