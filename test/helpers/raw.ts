/**
 * Test helper: a raw Unix-socket peer that speaks bytes, not the client library, for sending
 * malformed or hostile input and reading exactly what the daemon answers.
 */

import { connect, type Socket } from 'node:net';
import { MessageCodec } from '../../protocol/codec.js';
import { FrameDecoder } from '../../protocol/frame.js';
import { PROTOCOL_VERSION } from '../../protocol/limits.js';

export class RawPeer {
  readonly messages: Record<string, unknown>[] = [];
  readonly codec = new MessageCodec();
  private readonly decoder = new FrameDecoder();
  closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const body of this.decoder.push(chunk)) this.messages.push(this.codec.decode(body));
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static open(socketPath: string): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const socket = connect(socketPath);
      socket.once('connect', () => resolve(new RawPeer(socket)));
      socket.once('error', reject);
    });
  }

  send(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  request(message: Record<string, unknown>): void {
    this.socket.write(this.codec.encode(message));
  }

  hello(id = 1): void {
    this.request({ id, op: 'hello', protocol: PROTOCOL_VERSION });
  }

  /** Resolves once at least `count` messages arrived (or rejects after timeoutMs). */
  async waitFor(count: number, timeoutMs = 5_000): Promise<Record<string, unknown>[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.messages.length < count) {
      if (Date.now() > deadline) throw new Error(`expected ${count} messages, got ${JSON.stringify(this.messages)}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    return this.messages;
  }

  close(): void {
    this.socket.destroy();
  }
}
