import { renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe } from 'vitest';
import { createControlPlane } from '../../control-plane/app.js';
import { startControlPlane } from '../../control-plane/node.js';
import { PublishedGroups } from '../../control-plane/published-groups.js';
import { parseGroups } from '../../shared/config/groups.js';
import { silentLogger } from '../../shared/log.js';
import { onCleanup, useCleanup, tempDir } from '../harness/index.js';
import { API_TOKEN, controlPlaneContract } from './control-plane.contract.js';

/** How long a written file may take to be published (watch debounce plus a busy machine). */
const PUBLISH_DEADLINE_MS = 10_000;

describe('control plane: the hono app (app.request)', () => {
  useCleanup();
  controlPlaneContract({
    name: 'app',
    async start(yaml) {
      const groups = new PublishedGroups({ saltKey: API_TOKEN });
      onCleanup(() => groups.close());
      await groups.publish(await parseGroups(yaml, 'groups.yml'), 'groups.yml');
      const app = createControlPlane({ groups, apiToken: API_TOKEN });
      return {
        request: async (p, init) => app.request(p, init),
        setConfig: async (next) => void (await groups.publish(await parseGroups(next, 'groups.yml'), 'groups.yml')),
      };
    },
  });
});

describe('control plane: the Node entry on a real listener, following a watched file', () => {
  useCleanup();
  controlPlaneContract({
    name: 'node',
    async start(yaml) {
      const dir = tempDir('reverst-cp-');
      const file = path.join(dir, 'groups.yml');
      writeFileSync(file, yaml);
      const server = await startControlPlane({ groups: file, watchGroups: true, listen: '127.0.0.1:0', apiToken: API_TOKEN, logger: silentLogger });
      onCleanup(() => server.stop());
      return {
        request: (p, init) => fetch(`${server.url}${p}`, init),
        async setConfig(next) {
          const before = server.groups.current!.etag;
          // An atomic replace, as editors and config management do.
          writeFileSync(`${file}.tmp`, next);
          renameSync(`${file}.tmp`, file);
          if (!(await server.groups.changed(before, PUBLISH_DEADLINE_MS))) throw new Error(`${file} was not published within ${PUBLISH_DEADLINE_MS} ms`);
        },
      };
    },
  });
});
