import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { onCleanup } from './cleanup.js';

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export type LineMatcher = RegExp | ((line: string) => boolean);

export interface SpawnOptions {
  /** Added to (and overriding) this process's environment. */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Label used in diagnostics; defaults to the command's base name. */
  name?: string;
  /**
   * SIGKILL the process at the end of the current cleanup scope (default true). Launchers whose
   * process is replaced on restart turn this off and register their own cleanup once.
   */
  cleanup?: boolean;
}

export interface ProcessHandle {
  readonly child: ChildProcess;
  readonly name: string;
  /** Lines written so far to each stream (without line terminators). */
  readonly stdout: readonly string[];
  readonly stderr: readonly string[];
  /** Settles once the process has exited and its output is fully read. */
  readonly exited: Promise<ExitInfo>;
  readonly alive: boolean;
  /**
   * The first line on stdout or stderr (already written or still to come) that matches.
   * Rejects on timeout or when the process exits first, with its output in the message.
   */
  waitForLine(match: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  waitForLine(match: (line: string) => boolean, timeoutMs?: number): Promise<string>;
  /** Sends `signal` (default SIGTERM) if the process is still running, then waits for it to exit. */
  kill(signal?: NodeJS.Signals): Promise<ExitInfo>;
  /** Everything written so far, stderr lines marked, for failure diagnostics. */
  output(): string;
}

const DEFAULT_WAIT_MS = 10_000;
// Error messages carry the end of the output: enough to see why, short enough to read.
const TAIL_LINES = 60;

// Last resort for scripts that call process.exit() without running cleanups. (It cannot help
// when the process is killed by a signal, as vitest ends its workers: there, useCleanup does.)
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

let tsxLoader: string | undefined;

/**
 * Runs a TypeScript file with `node --import tsx` (one process, unlike the tsx CLI, so signals
 * reach the script itself). Relative paths resolve against `options.cwd` or this process's cwd.
 */
export function spawnNode(scriptPath: string, args: string[] = [], options: SpawnOptions = {}): ProcessHandle {
  tsxLoader ??= pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  return spawnProcess(process.execPath, ['--import', tsxLoader, scriptPath, ...args], {
    name: path.basename(scriptPath),
    ...options,
  });
}

/** Starts `command` with its output captured line by line. */
export function spawnProcess(command: string, args: string[] = [], options: SpawnOptions = {}): ProcessHandle {
  const name = options.name ?? path.basename(command);
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);

  const stdout: string[] = [];
  const stderr: string[] = [];
  // Both streams in arrival order, for diagnostics and for matching lines already written.
  const all: Array<{ line: string; fromStderr: boolean }> = [];
  const listeners = new Set<(line: string) => void>();
  let exitInfo: ExitInfo | undefined;
  let spawnError: Error | undefined;

  const capture = (stream: NodeJS.ReadableStream, into: string[], fromStderr: boolean) => {
    let partial = '';
    const emit = (line: string) => {
      into.push(line);
      all.push({ line, fromStderr });
      for (const listener of [...listeners]) listener(line);
    };
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      const parts = (partial + chunk).split(/\r?\n/);
      partial = parts.pop()!;
      parts.forEach(emit);
    });
    stream.on('end', () => {
      if (partial) emit(partial);
    });
  };
  capture(child.stdout!, stdout, false);
  capture(child.stderr!, stderr, true);

  const exited = new Promise<ExitInfo>((resolve) => {
    child.once('close', (code, signal) => {
      running.delete(child);
      exitInfo = { code, signal };
      resolve(exitInfo);
    });
    // A spawn failure (e.g. ENOENT) never starts a process; report it as an exit without a code.
    child.once('error', (err) => {
      if (child.pid !== undefined) return;
      spawnError = err;
      running.delete(child);
      exitInfo = { code: null, signal: null };
      resolve(exitInfo);
    });
  });

  const format = (entries: typeof all) => entries.map((e) => (e.fromStderr ? `[stderr] ${e.line}` : e.line)).join('\n');
  const output = () => format(all);
  const tail = () => format(all.slice(-TAIL_LINES)) || '(no output)';
  const describeExit = () => (spawnError ? `failed to start: ${spawnError.message}` : `exited (code ${exitInfo?.code}, signal ${exitInfo?.signal})`);

  // biome-ignore lint/suspicious/noExplicitAny: the overloads in ProcessHandle give callers the precise type
  function waitForLine(match: LineMatcher, timeoutMs = DEFAULT_WAIT_MS): Promise<any> {
    // A global or sticky regex would keep state between lines; match each line afresh.
    const re = match instanceof RegExp ? new RegExp(match.source, match.flags.replace(/[gy]/g, '')) : undefined;
    const test = match as (line: string) => boolean;
    const result = re ? (line: string) => line.match(re) : (line: string) => (test(line) ? line : null);
    for (const { line } of all) {
      const found = result(line);
      if (found) return Promise.resolve(found);
    }
    return new Promise((resolve, reject) => {
      const finish = (settle: () => void) => {
        clearTimeout(timer);
        listeners.delete(onLine);
        settle();
      };
      const onLine = (line: string) => {
        const found = result(line);
        if (found) finish(() => resolve(found));
      };
      const fail = (why: string) => finish(() => reject(new Error(`${name} ${why}\n${tail()}`)));
      const timer = setTimeout(() => fail(`printed no line matching ${String(match)} within ${timeoutMs} ms`), timeoutMs);
      listeners.add(onLine);
      void exited.then(() => {
        if (listeners.has(onLine)) fail(`${describeExit()} before a line matching ${String(match)}`);
      });
    });
  }

  const handle: ProcessHandle = {
    child,
    name,
    stdout,
    stderr,
    exited,
    get alive() {
      return exitInfo === undefined;
    },
    waitForLine,
    kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (exitInfo === undefined) child.kill(signal);
      return exited;
    },
    output,
  };
  if (options.cleanup !== false) onCleanup(() => handle.kill('SIGKILL'));
  return handle;
}
