import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'shared/**/*.test.ts', 'data-plane/**/*.test.ts', 'client/**/*.test.ts', 'control-plane/**/*.test.ts'],
    // Real sockets and child processes: generous per-test limits, one file at a time per core.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
  },
});
