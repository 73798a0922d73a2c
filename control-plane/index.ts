// `reverst/control-plane`: the web-standard core, for any runtime. The Node entry
// (`reverst control-plane`: listeners, file and Kubernetes sources) is control-plane/node.ts.
export { createControlPlane, DEFAULT_MAX_WAIT_MS, type ControlPlaneDeps } from './app.js';
export { ExternalAuth, type Decision, type JwksOptions } from './external-auth.js';
export { PublishedGroups, type PublishedGroupsOptions, type Readiness, type Snapshot } from './published-groups.js';
export { controlPlaneFromEnv, DEFAULT_REFRESH_MS, type ServerlessEnv, type ServerlessOptions } from './serverless.js';
export { parseGroups, type GroupsConfig } from '../shared/config/groups.js';
