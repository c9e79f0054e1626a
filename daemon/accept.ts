/**
 * Whether an accepted socket may become a session, and the refusal written to one that may not.
 *
 * Responsibility: the checks every new connection passes, in order: the sockets its open-files
 * limit leaves for clients (cut off at once, descriptors.ts), shutdown (SHUTTING_DOWN),
 * connectionsMax (TOO_MANY_CONNECTIONS), the peer allow-lists (ACCESS_DENIED, access.ts) and
 * the slots by uid (TOO_MANY_CONNECTIONS, admission.ts). A refusal is one connection-level error
 * frame; each is counted in `connections.refused`, and the ones a flood of connects can repeat
 * are logged at most once per LISTENER_ERROR_LOG_INTERVAL_MS with the number left unlogged.
 *
 * Invariants: `admit` returns a release function exactly when the connection took a slot, and
 * that function must run once, when the connection closes (it gives the uid's slot back).
 */

import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { peerCredentials } from '../engine/index.js';
import { ToonDBError } from '../protocol/errors.js';
import { LISTENER_ERROR_LOG_INTERVAL_MS } from '../protocol/limits.js';
import { CONNECTION_ERROR_ID } from '../protocol/messages.js';
import { MessageCodec } from '../protocol/codec.js';
import { isPeerAllowed, socketFd, type PeerCredentials } from './access.js';
import { Admission, ownerReserve } from './admission.js';
import type { DaemonConfig } from './config.js';
import type { Counters } from './counters.js';
import type { DescriptorBudget } from './descriptors.js';
import { hangUp } from './hang-up.js';
import { ThrottledLog } from './throttled-log.js';

/** What the acceptor reads of the daemon, live (a reload replaces the config). */
export interface AcceptContext {
  readonly config: DaemonConfig;
  readonly counters: Counters;
  readonly descriptors: DescriptorBudget;
  readonly log: Logger;
  connectionsMax(): number;
  shuttingDown(): boolean;
  /** Sessions open now. */
  sessionsOpen(): number;
  /** Sockets the daemon holds, this one and refused ones still closing included. */
  socketsHeld(): number;
}

/** A connection that took a slot: its peer, whether that peer is an operator (the daemon's own
 * uid or root, admission.ts), and the function that gives the slot back. */
export interface Admitted {
  peer: PeerCredentials | null;
  operator: boolean;
  release: () => void;
}

export class Acceptor {
  private readonly admission = new Admission(process.getuid?.());
  private readonly cutOffs = new ThrottledLog(LISTENER_ERROR_LOG_INTERVAL_MS);
  private readonly noSlotRefusals = new ThrottledLog(LISTENER_ERROR_LOG_INTERVAL_MS);
  private readonly accessRefusals = new ThrottledLog(LISTENER_ERROR_LOG_INTERVAL_MS);

  constructor(private readonly ctx: AcceptContext) {}

  /** The connection's slot, or null when it was refused (told why, counted and, as above,
   * logged); `log` is the connection's own logger. */
  admit(socket: Socket, log: Logger): Admitted | null {
    const { ctx } = this;
    // Read first (one getsockopt): the socket budget keeps room for operators too, or another
    // user's connect flood, each refusal lingering (hang-up.ts), would cut them off as well.
    let peer: PeerCredentials | null = null;
    try {
      peer = peerCredentials(socketFd(socket));
    } catch (error) {
      ctx.log.warn({ err: error }, 'cannot read peer credentials');
    }
    const socketsFor = ctx.descriptors.sockets - (this.admission.isOperator(peer) ? 0 : ownerReserve(ctx.connectionsMax()));
    if (ctx.socketsHeld() > socketsFor) {
      // Every socket the daemon holds is a descriptor the engine may need for a flush: one past
      // the budget is told why and closed at once, not left to linger (hang-up.ts).
      this.cutOff(socket, new ToonDBError('TOO_MANY_CONNECTIONS',
        `daemon already holds ${socketsFor} sockets, all that its open-files limit (${ctx.descriptors.openFilesLimit}) leaves for clients`
        + (socketsFor < ctx.descriptors.sockets ? ' other than its own user and root' : '')));
      return null;
    }
    if (ctx.shuttingDown()) {
      ctx.counters.connectionsRefused += 1;
      this.refuse(socket, new ToonDBError('SHUTTING_DOWN', 'daemon is shutting down'));
      return null;
    }
    const connectionsMax = ctx.connectionsMax();
    if (ctx.sessionsOpen() >= connectionsMax) {
      this.refuseNoSlot(socket, null, new ToonDBError('TOO_MANY_CONNECTIONS', `daemon already serves ${connectionsMax} connections`));
      return null;
    }
    const { config } = ctx;
    if ((config.allowUids.length > 0 || config.allowGids.length > 0) && (peer === null || !isPeerAllowed(peer, config))) {
      ctx.counters.connectionsRefused += 1;
      const unlogged = this.accessRefusals.take();
      if (unlogged !== null) log.warn({ peer, unlogged }, 'refused peer not on the allow-list');
      this.refuse(socket, new ToonDBError('ACCESS_DENIED', `peer uid ${peer?.uid ?? '?'} gid ${peer?.gid ?? '?'} is not allowed by this daemon`));
      return null;
    }
    const refusal = this.admission.refusal(peer, ctx.sessionsOpen(), connectionsMax, config.connectionsPerUidMax);
    if (refusal !== null) {
      this.refuseNoSlot(socket, peer, refusal);
      return null;
    }
    const key = this.admission.keyOf(peer);
    this.admission.opened(key);
    return { peer, operator: this.admission.isOperator(peer), release: () => this.admission.closed(key) };
  }

  /** Connections open now by peer uid (admission.ts). */
  heldByUid(): Record<string, number> {
    return this.admission.heldByUid();
  }

  /** Refuses a connection no slot is left for (TOO_MANY_CONNECTIONS), with a throttled warning. */
  private refuseNoSlot(socket: Socket, peer: PeerCredentials | null, error: ToonDBError): void {
    this.ctx.counters.connectionsRefused += 1;
    const unlogged = this.noSlotRefusals.take();
    if (unlogged !== null) this.ctx.log.warn({ peer, reason: error.message, unlogged }, 'refused a connection: no slot left for it');
    this.refuse(socket, error);
  }

  private refuse(socket: Socket, error: ToonDBError): void {
    writeRefusal(socket, error);
    // Not ended and left: never read, such a socket closed only when the daemon stopped.
    hangUp(socket);
  }

  /** Writes the refusal (a small write to an empty socket goes out at once) and closes now. */
  private cutOff(socket: Socket, error: ToonDBError): void {
    this.ctx.counters.connectionsRefused += 1;
    writeRefusal(socket, error);
    socket.destroy();
    const unlogged = this.cutOffs.take();
    if (unlogged !== null) {
      this.ctx.log.warn({ sockets: this.ctx.descriptors.sockets, openFilesLimit: this.ctx.descriptors.openFilesLimit, unlogged },
        'cut off a connection: the daemon holds all the sockets its open-files limit leaves for clients');
    }
  }
}

function writeRefusal(socket: Socket, error: ToonDBError): void {
  socket.on('error', () => undefined);
  socket.write(new MessageCodec().encode({ id: CONNECTION_ERROR_ID, error: { code: error.code, message: error.message } }));
}
