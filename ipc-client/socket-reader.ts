/**
 * SocketReader: a client socket whose reads land in one buffer that is reused for every read.
 *
 * Responsibility: connect to the daemon with Node's `onread` option, so that a read costs the
 * kernel's copy into CLIENT_READ_BUFFER_BYTES of memory this connection owns, instead of a new
 * 64 KiB allocation per read (shrunk to its size, wrapped in a Buffer and freed by the GC),
 * and a large reply (a scan batch) arrives in fewer reads. Hands each chunk to one consumer.
 *
 * Invariants:
 * - A chunk given to the consumer is valid only during the call: the next read overwrites it.
 *   The consumer must copy whatever it keeps (Connection does: FrameDecoder copies partial
 *   frames, and every value handed to a caller is copied out of its reply).
 * - Bytes that arrive before a consumer is attached (e.g. a connection-level error sent at
 *   accept) are copied and held, and reading pauses until `attach`, so nothing is lost and at
 *   most one read is held.
 */

import { connect, type Socket } from 'node:net';
import { CLIENT_READ_BUFFER_BYTES } from '../protocol/limits.js';
import { bufferView } from '../protocol/views.js';

export type ChunkConsumer = (chunk: Buffer) => void;

export class SocketReader {
  readonly socket: Socket;
  private consumer: ChunkConsumer | null = null;
  private held: Buffer[] = [];

  constructor(path: string) {
    this.socket = connect({
      path,
      onread: {
        buffer: Buffer.allocUnsafeSlow(CLIENT_READ_BUFFER_BYTES),
        callback: (bytesRead: number, buffer: Uint8Array): boolean => this.onRead(bytesRead, buffer),
      },
    });
  }

  /** Starts handing chunks to `consumer`, first any held since the connect. */
  attach(consumer: ChunkConsumer): void {
    if (this.consumer !== null) throw new Error('invariant: a socket reader has one consumer');
    this.consumer = consumer;
    const held = this.held;
    this.held = [];
    for (const chunk of held) consumer(chunk);
    if (held.length > 0 && !this.socket.destroyed) this.socket.resume();
  }

  /** Returns false to pause reading (nobody to read for yet). */
  private onRead(bytesRead: number, buffer: Uint8Array): boolean {
    const chunk = bufferView(buffer.buffer, buffer.byteOffset, bytesRead);
    if (this.consumer !== null) {
      this.consumer(chunk);
      return true;
    }
    this.held.push(Buffer.from(chunk)); // a copy: the buffer is reused by the next read
    return false;
  }
}
