// The one command: a data-plane node by default, `reverst http` to expose a local server,
// `reverst control-plane` to serve groups and auth to nodes.
import { ReverstError } from './shared/errors.js';

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === 'http') {
    const { runHttpCommand } = await import('./client/http-command.js');
    return runHttpCommand(rest);
  }
  if (command === 'control-plane') {
    const { runControlPlane } = await import('./control-plane/node.js');
    return runControlPlane(rest);
  }
  const { runNode } = await import('./data-plane/main.js');
  return runNode(command === 'data-plane' ? rest : argv);
}

main(process.argv.slice(2)).then(
  () => process.exit(process.exitCode ?? 0),
  (err: unknown) => {
    // Bad input gets one line that says what to change; anything else keeps its stack.
    process.stderr.write(err instanceof ReverstError ? `reverst: ${err.message}\n` : `reverst: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(err instanceof ReverstError ? 2 : 1);
  },
);
