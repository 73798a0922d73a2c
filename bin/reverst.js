#!/usr/bin/env node
// Runs the compiled command: `npm run build` makes dist/ (npm install runs it through `prepare`).
try {
  await import('../dist/cli.js');
} catch (err) {
  if (err?.code !== 'ERR_MODULE_NOT_FOUND' || !String(err.message).includes('dist/cli.js')) throw err;
  process.stderr.write('reverst: dist/ is missing: run `npm run build` (npm install runs it) and try again\n');
  process.exit(2);
}
