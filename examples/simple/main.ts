// The seed's example service: registers on the tunnel group and answers every request with PONG.
//   npx tsx examples/simple/main.ts --username user --password pass
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { NotFoundError, RegistrationError, ServerNameError, UnauthorizedError, basic, connect } from '../../client/index.js';
import { createLogger } from '../../shared/log.js';

const { values } = parseArgs({
  options: {
    address: { type: 'string', default: '127.0.0.1:7171' },
    'server-name': { type: 'string', default: 'flipt.dev.local' },
    ca: { type: 'string', default: fileURLToPath(new URL('server.crt', import.meta.url)) },
    group: { type: 'string', default: 'flipt.dev.local' },
    username: { type: 'string', default: '' },
    password: { type: 'string', default: '' },
  },
});

const logger = createLogger({ level: 'info' });

try {
  const tunnel = await connect({
    addresses: [values.address],
    serverName: values['server-name'],
    ca: await readFile(values.ca),
    group: values.group,
    auth: basic(values.username, values.password),
    handler: () => new Response('PONG'),
    logger,
  });
  // Leave the node cleanly, so it stops routing to this process at once.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void tunnel.close());
  const error = await tunnel.closed;
  if (error) throw error;
} catch (err) {
  process.stderr.write(`${oneLine(err)}\n`);
  process.exit(1);
}

/** What stopped the tunnel, and what to change. */
function oneLine(err: unknown): string {
  if (err instanceof ServerNameError) return `${err.message} (check --server-name)`;
  if (!(err instanceof RegistrationError)) return (err as Error).message;
  const hint = err instanceof UnauthorizedError ? ' (check --username/--password)' : err instanceof NotFoundError ? ' (check --group)' : '';
  return `registration failed: ${err.message}${hint}`;
}
