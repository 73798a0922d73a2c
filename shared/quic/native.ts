// The one place in the project that imports @matrixai/quic. We load only its
// native quiche binding: the package's own classes are slow and can hang
// (see README "Transport"), so shared/quic drives quiche with its own loop.
import { quiche } from '@matrixai/quic/native/index.js';
import type { Config, Connection as NativeConnection, ConnectionError as NativeConnectionError, Header, Stats } from '@matrixai/quic/native/types.js';

export { quiche };
export type { Config, NativeConnection, NativeConnectionError, Header, Stats };

// Values of quiche's Shutdown and Type enums, fixed by the binding.
export const SHUTDOWN_READ = 0;
export const SHUTDOWN_WRITE = 1;
export const PACKET_TYPE_INITIAL = 0;
export const PROTOCOL_VERSION: number = quiche.PROTOCOL_VERSION;
