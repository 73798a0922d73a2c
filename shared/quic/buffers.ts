import { randomFillSync } from 'node:crypto';

/**
 * Memory for outgoing packets, handed out in order and never rewritten: dgram may hold a
 * packet's bytes until the kernel takes them (when the socket buffer is full), so a full slab
 * is replaced and left to the GC once its last packets are out. Carving never rewrites, so one
 * slab serves every socket of the process: a connection, idle or dialling, holds none of its own.
 */
export class SendSlab {
  #buf: Buffer;
  #offset = 0;

  constructor(readonly size: number) {
    this.#buf = Buffer.allocUnsafe(size);
  }

  /** Room for one packet of up to `max` bytes. */
  room(max: number): Buffer {
    if (this.size - this.#offset < max) {
      this.#buf = Buffer.allocUnsafe(this.size);
      this.#offset = 0;
    }
    return this.#buf.subarray(this.#offset, this.#offset + max);
  }

  /** The first `length` bytes of the last room() hold a packet now being sent. */
  used(length: number): void {
    this.#offset += length;
  }
}

/** 1 MiB: 64 loopback packets or ~770 network ones before a new slab is needed. */
export const sendSlab = new SendSlab(1 << 20);

// Random connection ids come from a pool refilled in bulk: one call per id was a noticeable
// part of dialling thousands of connections at once.
const ID_POOL_BYTES = 4096;
const idPool = Buffer.allocUnsafe(ID_POOL_BYTES);
let idOffset = ID_POOL_BYTES;

/** `length` fresh random bytes (a connection id), in a buffer of their own. */
export function randomId(length: number): Buffer {
  if (idOffset + length > ID_POOL_BYTES) {
    randomFillSync(idPool);
    idOffset = 0;
  }
  const id = Buffer.from(idPool.subarray(idOffset, idOffset + length));
  idOffset += length;
  return id;
}
