import { beforeAll, describe } from 'vitest';
import { startNats, startRedis, useCleanup, type ServerHandle } from '../harness/index.js';
import { membershipContract } from './membership.contract.js';

describe('memory membership', () => {
  useCleanup();
  membershipContract({ name: 'memory', url: (namespace) => `memory://${namespace}` });
});

describe('redis membership', () => {
  useCleanup();
  let redis: ServerHandle;
  beforeAll(async () => {
    redis = await startRedis();
  });
  membershipContract({
    name: 'redis',
    url: () => redis.url,
    outage: { kill: () => redis.kill(), restart: () => redis.restart() },
  });
});

describe('nats membership', () => {
  useCleanup();
  let nats: ServerHandle;
  beforeAll(async () => {
    nats = await startNats();
  });
  membershipContract({
    name: 'nats',
    url: () => nats.url,
    outage: { kill: () => nats.kill(), restart: () => nats.restart() },
  });
});
