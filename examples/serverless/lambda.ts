// The control plane on AWS Lambda behind API Gateway or a function URL, through hono's adapter.
// Environment: REVERST_API_TOKEN and either REVERST_GROUPS_YAML or REVERST_GROUPS_URL.
// In your project: import { controlPlaneFromEnv } from 'reverst/control-plane';
import { handle } from 'hono/aws-lambda';
import { controlPlaneFromEnv } from '../../control-plane/index.js';

// API Gateway ends a request after 29 s: long-polls end (304) before that, and nodes poll again.
export const handler = handle(controlPlaneFromEnv(process.env, { maxWaitMs: 25_000 }));
