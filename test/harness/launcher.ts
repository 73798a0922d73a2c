import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { onCleanup } from './cleanup.js';
import { freePort } from './ports.js';
import { spawnProcess, type ProcessHandle } from './processes.js';

/** A real server process on 127.0.0.1 that tests can stop, kill and bring back on the same port. */
export interface ServerHandle {
  readonly url: string;
  readonly port: number;
  /** The current process (a new one after each restart). */
  readonly process: ProcessHandle;
  /** SIGTERM, then SIGKILL if it has not exited within a grace period. */
  stop(): Promise<void>;
  /** SIGKILL: the crash case. */
  kill(): Promise<void>;
  /** A new process on the same port (stopping the current one first if it still runs), ready. */
  restart(): Promise<void>;
  output(): string;
}

export interface ServerSpec {
  /** Executable name, used in diagnostics. */
  name: string;
  command: string;
  args(port: number): string[];
  url(port: number): string;
  /** One readiness probe: resolves true once the server answers like itself. */
  probe(port: number): Promise<boolean>;
  /** Runs at cleanup after the process is gone (e.g. removes a data directory). */
  dispose?(): unknown;
}

const READY_TIMEOUT_MS = 10_000;
const POLL_INTERVAL_MS = 50;
const STOP_GRACE_MS = 5_000;
// A free port can be taken by someone else before the server binds it: when the server exits
// at start, try a fresh port.
const START_ATTEMPTS = 3;

/** Starts `spec` on a free port, polls until it answers, and registers it for cleanup. */
export async function launchServer(spec: ServerSpec): Promise<ServerHandle> {
  let port = 0;
  let current: ProcessHandle | undefined;
  let failure: unknown;
  for (let attempt = 0; attempt < START_ATTEMPTS && !current; attempt++) {
    port = await freePort('tcp');
    const proc = spawnProcess(spec.command, spec.args(port), { name: spec.name, cleanup: false });
    try {
      await waitUntilReady(spec, proc, port);
      current = proc;
    } catch (err) {
      failure = err;
      const crashed = !proc.alive;
      await proc.kill('SIGKILL');
      if (!crashed) break; // a server that runs but never answers will not do better elsewhere
    }
  }
  if (!current) {
    await spec.dispose?.();
    throw failure;
  }
  let proc: ProcessHandle = current;

  onCleanup(async () => {
    await proc.kill('SIGKILL');
    await spec.dispose?.();
  });

  const stop = async () => {
    const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_GRACE_MS);
    await proc.kill('SIGTERM');
    clearTimeout(timer);
  };

  return {
    url: spec.url(port),
    port,
    get process() {
      return proc;
    },
    stop,
    async kill() {
      await proc.kill('SIGKILL');
    },
    async restart() {
      await stop();
      proc = spawnProcess(spec.command, spec.args(port), { name: spec.name, cleanup: false });
      await waitUntilReady(spec, proc, port);
    },
    output: () => proc.output(),
  };
}

async function waitUntilReady(spec: ServerSpec, proc: ProcessHandle, port: number): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (!proc.alive) {
      const { code, signal } = await proc.exited;
      const how = `exited (code ${code}, signal ${signal})`;
      throw new Error(`${spec.name} on port ${port} ${how} before answering\n${proc.output()}`);
    }
    if (await spec.probe(port)) return;
    await sleep(POLL_INTERVAL_MS);
  }
  throw new Error(`${spec.name} on port ${port} did not answer within ${READY_TIMEOUT_MS} ms\n${proc.output()}`);
}

/**
 * Connects to 127.0.0.1:`port`, writes `send` if given, and resolves true as soon as the data
 * received satisfies `answered`; false on refusal, close or timeout.
 */
export function tcpAnswers(port: number, answered: (received: string) => boolean, send?: string, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    let received = '';
    const socket = net.connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.setEncoding('utf8');
    socket.on('connect', () => {
      if (send) socket.write(send);
    });
    socket.on('data', (chunk: string) => {
      received += chunk;
      if (answered(received)) done(true);
    });
    socket.on('error', () => done(false));
    socket.on('close', () => done(false));
  });
}
