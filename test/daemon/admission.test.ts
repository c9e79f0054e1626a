// Admission of a connection by its peer: operators (the daemon's uid and root) may take every
// slot, other users only connectionsMax minus the operators' reserve, and at most
// connectionsPerUidMax each.
import { describe, expect, it } from 'vitest';
import { Admission, ownerReserve } from '../../daemon/admission.js';
import { OWNER_CONNECTIONS_RESERVED, STATS_UIDS_MAX } from '../../protocol/limits.js';

const OWN_UID = 1000;
const peer = (uid: number) => ({ uid, gid: uid, pid: 1, groups: [] });

describe('connection admission', () => {
  it('keeps OWNER_CONNECTIONS_RESERVED slots, never more than half of connectionsMax', () => {
    expect(ownerReserve(1024)).toBe(OWNER_CONNECTIONS_RESERVED);
    expect(ownerReserve(2 * OWNER_CONNECTIONS_RESERVED)).toBe(OWNER_CONNECTIONS_RESERVED);
    expect(ownerReserve(5)).toBe(2);
    expect(ownerReserve(1)).toBe(0);
  });

  it('refuses other users the reserved slots and admits the daemon\'s uid and root to them', () => {
    const admission = new Admission(OWN_UID);
    const max = 10;
    const shared = max - ownerReserve(max);
    expect(admission.refusal(peer(2000), shared - 1, max, max)).toBeNull();
    const refused = admission.refusal(peer(2000), shared, max, max);
    expect(refused).toMatchObject({ code: 'TOO_MANY_CONNECTIONS' });
    expect(refused?.message).toMatch(/keeps the last 4 of its 10 for its own user and root/);
    expect(admission.refusal(null, shared, max, max)).toMatchObject({ code: 'TOO_MANY_CONNECTIONS' });
    expect(admission.refusal(peer(OWN_UID), max - 1, max, max)).toBeNull();
    expect(admission.refusal(peer(0), max - 1, max, max)).toBeNull();
  });

  it('caps the connections of one uid, counting each uid and the unknown peer apart', () => {
    const admission = new Admission(OWN_UID);
    const max = 100;
    for (let i = 0; i < 3; i++) admission.opened(admission.keyOf(peer(2000)));
    expect(admission.refusal(peer(2000), 3, max, 3)?.message).toMatch(/uid 2000 already holds 3 connections/);
    expect(admission.refusal(peer(2001), 3, max, 3)).toBeNull();
    expect(admission.refusal(peer(OWN_UID), 3, max, 1)).toBeNull(); // operators are not capped
    admission.closed(admission.keyOf(peer(2000)));
    expect(admission.refusal(peer(2000), 2, max, 3)).toBeNull();
    for (let i = 0; i < 2; i++) admission.opened(admission.keyOf(null));
    expect(admission.refusal(null, 4, max, 2)?.message).toMatch(/credentials could not be read already hold 2/);
    expect(admission.heldByUid()).toEqual({ 2000: 2, unknown: 2 });
    admission.closed(admission.keyOf(peer(2000)));
    admission.closed(admission.keyOf(peer(2000)));
    expect(admission.heldByUid()).toEqual({ unknown: 2 }); // a uid holding none has no entry
  });

  it('reports at most STATS_UIDS_MAX uids, the ones holding most, and the rest as "others"', () => {
    const admission = new Admission(OWN_UID);
    // 300 uids holding one connection each, and three holding more.
    for (let uid = 5000; uid < 5300; uid++) admission.opened(uid);
    for (let i = 0; i < 3; i++) admission.opened(5299);
    for (let i = 0; i < 2; i++) admission.opened(admission.keyOf(null));
    admission.opened(4000);
    const held = admission.heldByUid();
    expect(Object.keys(held)).toHaveLength(STATS_UIDS_MAX);
    expect(held).toMatchObject({ 5299: 4, unknown: 2, 4000: 1, 5000: 1 });
    expect(held[5300 - 1 - 1]).toBeUndefined(); // uids tied at 1 go by the lowest first
    const total = 300 + 3 + 2 + 1;
    expect(Object.values(held).reduce((a, b) => a + b, 0)).toBe(total);
    expect(held.others).toBe(total - 4 - 2 - (STATS_UIDS_MAX - 3));
    // At or under the bound, every uid is listed and there is no "others".
    const few = new Admission(OWN_UID);
    for (let uid = 1; uid <= STATS_UIDS_MAX; uid++) few.opened(uid);
    expect(Object.keys(few.heldByUid())).toHaveLength(STATS_UIDS_MAX);
    expect(few.heldByUid().others).toBeUndefined();
  });

  it('asserts on a close the peer never opened', () => {
    const admission = new Admission(OWN_UID);
    expect(() => admission.closed(2000)).toThrow(/invariant/);
  });
});
