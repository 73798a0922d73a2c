// The client library: register on a tunnel group and serve what arrives (design §7).
export { basic, bearer, type Auth } from './auth.js';
export type { FetchHandler } from './fetch-adapter.js';
export type { Handler, NodeListener } from './handler.js';
export type { ConnectOptions } from './options.js';
export {
  connect,
  Tunnel,
  type CloseTunnelOptions,
  type DrainEvent,
  type ReadyEvent,
  type ReconnectingEvent,
  type TunnelEvents,
} from './tunnel.js';
export {
  BadRequestError,
  NotFoundError,
  ProtocolError,
  RegistrationError,
  ReverstError,
  ServerError,
  ServerNameError,
  UnauthorizedError,
} from '../shared/errors.js';
