// The QUIC transport: our own small types over quiche's native binding.
export { connectQuic, type QuicConnectOptions } from './client.js';
export { QuicConnection, type CloseOptions, type HostPort } from './connection.js';
export * from './errors.js';
export * from './options.js';
export { QuicServer, type QuicServerOptions } from './server.js';
export { QuicStream } from './stream.js';
