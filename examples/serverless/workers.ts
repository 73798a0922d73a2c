// The control plane as a Workers module (Cloudflare Workers, workerd, or any runtime that
// calls `export default { fetch }`). Bindings: REVERST_API_TOKEN (a secret) and either
// REVERST_GROUPS_YAML (the groups file) or REVERST_GROUPS_URL (where to read it).
// In your project: import { controlPlaneFromEnv } from 'reverst/control-plane';
import type { Hono } from 'hono';
import { controlPlaneFromEnv, type ServerlessEnv } from '../../control-plane/index.js';

let app: Hono | undefined;

export default {
  fetch(request: Request, env: ServerlessEnv): Response | Promise<Response> {
    // Bindings arrive with the first request; the app (and its loaded config) then lives as long as the isolate.
    app ??= controlPlaneFromEnv(env);
    return app.fetch(request);
  },
};
