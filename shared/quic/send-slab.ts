/**
 * Memory for outgoing packets, handed out in order and never rewritten: dgram may hold a
 * packet's bytes until the kernel takes them (when the socket buffer is full), so a full slab
 * is replaced and left to the GC once its last packets are out. One per UDP socket: a server's
 * connections share it, so an idle connection holds none.
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
export const SEND_SLAB_SIZE = 1 << 20;
