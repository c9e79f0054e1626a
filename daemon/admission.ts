/**
 * Which connections may take a slot: the share of `connectionsMax` other users may fill, and
 * how many one user may hold.
 *
 * Responsibility: after the total bound and the allow-lists (accept.ts, access.ts), decide
 * whether a new connection's peer may take a slot, and count the slots each uid holds.
 *
 * - The daemon's own uid and root are operators: they may take every slot. Everyone else is
 *   refused once the daemon serves `connectionsMax - ownerReserve(connectionsMax)`
 *   connections, so that when other users' clients fill their share an operator can still run
 *   `toondb stats` or `toondbd stop` (as PostgreSQL keeps connections for superusers).
 * - `connectionsPerUidMax` bounds the slots one non-operator uid holds at once (default
 *   `connectionsMax`: no bound beyond the shared one). A peer whose credentials could not be
 *   read counts as one unknown user.
 *
 * Invariants: `opened` and `closed` are called once each per admitted connection, with the
 * same key; a count never goes below zero (asserted) and a uid holding none has no entry, so
 * the map holds at most one entry per open connection. What `stats` reports of it is bounded
 * (STATS_UIDS_MAX entries).
 */

import { ok as assert } from 'node:assert/strict';
import { ToonDBError } from '../protocol/errors.js';
import { OWNER_CONNECTIONS_RESERVED, STATS_UIDS_MAX } from '../protocol/limits.js';
import type { PeerCredentials } from './access.js';

/** The key a peer's slots are counted under; the unknown user when its credentials were not read. */
export type PeerKey = number;
const UNKNOWN_PEER: PeerKey = -1;

/** Slots kept for operators: OWNER_CONNECTIONS_RESERVED, but never more than half of them. */
export function ownerReserve(connectionsMax: number): number {
  return Math.min(OWNER_CONNECTIONS_RESERVED, Math.floor(connectionsMax / 2));
}

export class Admission {
  private readonly heldByPeer = new Map<PeerKey, number>();

  constructor(private readonly ownUid: number | undefined) {}

  /** True for the daemon's own uid and root: they may take every slot, and shut the daemon down. */
  isOperator(peer: PeerCredentials | null): boolean {
    return peer !== null && (peer.uid === 0 || peer.uid === this.ownUid);
  }

  keyOf(peer: PeerCredentials | null): PeerKey {
    return peer === null ? UNKNOWN_PEER : peer.uid;
  }

  /** Why `peer` may not take a slot now (`active` connections are served), or null. The total
   * bound is checked before this (accept.ts). */
  refusal(peer: PeerCredentials | null, active: number, connectionsMax: number, connectionsPerUidMax: number): ToonDBError | null {
    if (this.isOperator(peer)) return null;
    const reserve = ownerReserve(connectionsMax);
    if (active >= connectionsMax - reserve) {
      return new ToonDBError('TOO_MANY_CONNECTIONS',
        `daemon already serves ${active} connections; it keeps the last ${reserve} of its ${connectionsMax} for its own user and root`);
    }
    const held = this.heldByPeer.get(this.keyOf(peer)) ?? 0;
    if (held >= connectionsPerUidMax) {
      const who = peer === null ? 'peers whose credentials could not be read' : `uid ${peer.uid}`;
      return new ToonDBError('TOO_MANY_CONNECTIONS',
        `${who} already hold${peer === null ? '' : 's'} ${held} connections, the most one user may (connectionsPerUidMax)`);
    }
    return null;
  }

  opened(key: PeerKey): void {
    this.heldByPeer.set(key, (this.heldByPeer.get(key) ?? 0) + 1);
  }

  /** Connections each peer holds, by uid in decimal ("unknown": credentials not read): the
   * `entriesMax - 1` peers holding the most (ties to the lower uid), and "others" with the
   * connections of the rest when there are more peers than `entriesMax`. */
  heldByUid(entriesMax = STATS_UIDS_MAX): Record<string, number> {
    assert(entriesMax >= 2, `invariant: room for a uid and "others", got ${entriesMax}`);
    let peers = [...this.heldByPeer];
    let others = 0;
    if (peers.length > entriesMax) {
      peers.sort(([keyA, countA], [keyB, countB]) => countB - countA || keyA - keyB);
      for (const [, count] of peers.slice(entriesMax - 1)) others += count;
      peers = peers.slice(0, entriesMax - 1);
    }
    const held: Record<string, number> = {};
    for (const [key, count] of peers) held[key === UNKNOWN_PEER ? 'unknown' : String(key)] = count;
    if (others > 0) held.others = others;
    return held;
  }

  closed(key: PeerKey): void {
    const held = this.heldByPeer.get(key) ?? 0;
    assert(held > 0, `invariant: peer ${key} closed a connection it did not hold`);
    if (held === 1) this.heldByPeer.delete(key);
    else this.heldByPeer.set(key, held - 1);
  }
}
