//! The binary form of `execute`'s input and output (the addon ABI between engine/abi.ts and
//! this crate).
//!
//! Responsibility: decode a batch of ops from one byte buffer and encode their results into
//! one byte buffer, so a batch crosses the napi boundary as two buffers instead of one JS object
//! (a dozen property lookups) per op and one napi Buffer per key and value.
//!
//! Layout (little-endian; `bytes` = u32 length + that many bytes; `num` = f64):
//!   ops:     u32 count, then per op: u8 kind, u16 flags, then the present fields in this order:
//!            txn num (F_TXN), key bytes (F_KEY), value bytes (F_VALUE), keys list (F_KEYS),
//!            values list (F_VALUES), end bytes (F_END), ttlMs num (F_TTL),
//!            cursor num (F_CURSOR), limit num (F_LIMIT), batchItems num (F_BATCH_ITEMS),
//!            batchBytes num (F_BATCH_BYTES), isolation u32 (F_ISOLATION), writes num (F_WRITES); flags F_RANGE,
//!            F_REVERSE and F_EXPIRY carry booleans. A list is u32 n + n bytes, or, packed
//!            (n | LIST_PACKED, a request's keys as the daemon read them), bytes holding n
//!            MessagePack `bin`s in any bin form.
//!   results: u32 count, then per result: u16 flags, seq num, then the present fields: code bytes
//!            + message bytes (R_ERROR), value bytes (R_VALUE; R_VALUE_NULL alone means null),
//!            values u32 n + bytes holding n MessagePack `bin`s or nils (R_VALUES), keys u32 n + n
//!            bytes (R_KEYS), entries u32 n + bytes holding n MessagePack `[bin, bin]` pairs, or
//!            `[bin, bin, expiry]` triples for a scan opened with F_EXPIRY (R_ENTRIES, see wire.rs),
//!            the entries among them that carry a TTL: u32 n, then per entry u32 start, u32 end
//!            (its bytes in the entries' bytes) and expiry num, ms since the epoch (R_EXPIRING,
//!            cursors.rs Expiring), cursor num (R_CURSOR), txn num
//!            (R_TXN), commitTs u64 (R_COMMIT_TS); R_FOUND / R_DONE carry booleans with
//!            R_HAS_FOUND / R_HAS_DONE saying they are present.
//!
//!   done:    the outcomes of lane calls (lanes.rs): u32 count, then per call: u32 call id, u8
//!            status, bytes: status 0 = the call's results as above, 1 = a whole-call failure
//!            as the UTF-8 text `[CODE] message`.
//!
//! Invariants: decoding never reads past the buffer (a short or malformed buffer is an
//! INVALID_ARGUMENT for the whole call); the flag constants match engine/abi.ts.

use super::error::{EngineError, EngineResult};
use super::ops::{Op, OpOutput};

pub const F_TXN: u16 = 1 << 0;
pub const F_KEY: u16 = 1 << 1;
pub const F_VALUE: u16 = 1 << 2;
pub const F_KEYS: u16 = 1 << 3;
pub const F_VALUES: u16 = 1 << 4;
pub const F_END: u16 = 1 << 5;
pub const F_RANGE: u16 = 1 << 6;
pub const F_TTL: u16 = 1 << 7;
pub const F_CURSOR: u16 = 1 << 8;
pub const F_REVERSE: u16 = 1 << 9;
pub const F_LIMIT: u16 = 1 << 10;
pub const F_BATCH_ITEMS: u16 = 1 << 11;
pub const F_BATCH_BYTES: u16 = 1 << 12;
pub const F_ISOLATION: u16 = 1 << 13;
pub const F_WRITES: u16 = 1 << 14;
pub const F_EXPIRY: u16 = 1 << 15;
/// Set in a list's count when the list is packed (see the layout above).
pub const LIST_PACKED: u32 = 1 << 31;

pub const R_ERROR: u16 = 1 << 0;
pub const R_VALUE: u16 = 1 << 1;
pub const R_VALUE_NULL: u16 = 1 << 2;
pub const R_HAS_FOUND: u16 = 1 << 3;
pub const R_FOUND: u16 = 1 << 4;
pub const R_VALUES: u16 = 1 << 5;
pub const R_KEYS: u16 = 1 << 6;
pub const R_ENTRIES: u16 = 1 << 7;
pub const R_HAS_DONE: u16 = 1 << 8;
pub const R_DONE: u16 = 1 << 9;
pub const R_CURSOR: u16 = 1 << 10;
pub const R_TXN: u16 = 1 << 11;
pub const R_COMMIT_TS: u16 = 1 << 12;
pub const R_EXPIRING: u16 = 1 << 13;

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> EngineResult<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| EngineError::invalid(format!("op buffer truncated at byte {}", self.at)))?;
        let out = &self.buf[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> EngineResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> EngineResult<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> EngineResult<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn num(&mut self) -> EngineResult<f64> {
        Ok(f64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn bytes(&mut self) -> EngineResult<Vec<u8>> {
        Ok(self.take_bytes()?.to_vec())
    }

    fn take_bytes(&mut self) -> EngineResult<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn list(&mut self) -> EngineResult<Vec<Vec<u8>>> {
        let n = self.u32()?;
        if n & LIST_PACKED != 0 {
            return packed_bins((n & !LIST_PACKED) as usize, self.take_bytes()?);
        }
        let n = n as usize;
        // Each entry needs at least its 4-byte length: refuse counts the buffer cannot hold.
        if n > (self.buf.len() - self.at) / 4 {
            return Err(EngineError::invalid(format!("op buffer claims {n} entries it cannot hold")));
        }
        (0..n).map(|_| self.bytes()).collect()
    }
}

/// The `count` MessagePack bins (bin 8, 16 or 32) that fill `bytes` exactly.
fn packed_bins(count: usize, bytes: &[u8]) -> EngineResult<Vec<Vec<u8>>> {
    let malformed = || EngineError::invalid(format!("packed list of {count} bins is malformed ({} bytes)", bytes.len()));
    // Each bin takes at least its 2-byte header: refuse counts the bytes cannot hold.
    if count > bytes.len() / 2 {
        return Err(malformed());
    }
    let mut items = Vec::with_capacity(count);
    let mut at = 0;
    for _ in 0..count {
        let (header, len) = match bytes.get(at) {
            Some(0xc4) => (2, bytes.get(at + 1).map(|&b| b as usize)),
            Some(0xc5) => (3, bytes.get(at + 1..at + 3).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)),
            Some(0xc6) => (5, bytes.get(at + 1..at + 5).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)),
            _ => return Err(malformed()),
        };
        let start = at + header;
        let item = len.and_then(|len| bytes.get(start..start.checked_add(len)?)).ok_or_else(malformed)?;
        items.push(item.to_vec());
        at = start + item.len();
    }
    if at != bytes.len() {
        return Err(malformed());
    }
    Ok(items)
}

/// A handle that is not a positive safe integer can never name anything: it becomes 0, which is
/// never issued, so the op fails with NOT_IN_TRANSACTION / CURSOR_NOT_FOUND.
fn handle(value: f64) -> u64 {
    if value.is_finite() && value >= 1.0 && value.fract() == 0.0 && value <= 9_007_199_254_740_991.0 {
        value as u64
    } else {
        0
    }
}

pub fn decode_ops(buf: &[u8]) -> EngineResult<Vec<Op>> {
    let mut r = Reader { buf, at: 0 };
    let count = r.u32()? as usize;
    if count > buf.len() / 3 {
        return Err(EngineError::invalid(format!("op buffer claims {count} ops it cannot hold")));
    }
    let mut ops = Vec::with_capacity(count);
    for _ in 0..count {
        let kind = r.u8()? as u32;
        let flags = r.u16()?;
        let has = |f: u16| flags & f != 0;
        let mut op = Op { kind, range: has(F_RANGE), reverse: has(F_REVERSE), expiry: has(F_EXPIRY), ..Default::default() };
        if has(F_TXN) {
            op.txn = Some(handle(r.num()?));
        }
        if has(F_KEY) {
            op.key = Some(r.bytes()?);
        }
        if has(F_VALUE) {
            op.value = Some(r.bytes()?);
        }
        if has(F_KEYS) {
            op.keys = Some(r.list()?);
        }
        if has(F_VALUES) {
            op.values = Some(r.list()?);
        }
        if has(F_END) {
            op.end = Some(r.bytes()?);
        }
        if has(F_TTL) {
            op.ttl_ms = Some(r.num()?);
        }
        if has(F_CURSOR) {
            op.cursor = Some(handle(r.num()?));
        }
        if has(F_LIMIT) {
            op.limit = Some(r.num()?);
        }
        if has(F_BATCH_ITEMS) {
            op.batch_items = Some(r.num()?);
        }
        if has(F_BATCH_BYTES) {
            op.batch_bytes = Some(r.num()?);
        }
        if has(F_ISOLATION) {
            op.isolation = Some(r.u32()?);
        }
        if has(F_WRITES) {
            op.writes = Some(r.num()?);
        }
        ops.push(op);
    }
    if r.at != buf.len() {
        return Err(EngineError::invalid(format!("{} trailing bytes after {count} ops", buf.len() - r.at)));
    }
    Ok(ops)
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_list(out: &mut Vec<u8>, list: &[Vec<u8>]) {
    out.extend_from_slice(&(list.len() as u32).to_le_bytes());
    for item in list {
        put_bytes(out, item);
    }
}

fn put_num(out: &mut Vec<u8>, value: f64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Encodes lane outcomes, giving their results buffers back to spare.rs once copied.
pub fn encode_done(done: Vec<super::lanes::Done>) -> Vec<u8> {
    let payload: usize = done.iter().map(|d| d.output.as_ref().map_or(64, Vec::len)).sum();
    let mut out = super::spare::take(4 + done.len() * 9 + payload);
    out.extend_from_slice(&(done.len() as u32).to_le_bytes());
    for d in done {
        out.extend_from_slice(&d.call.to_le_bytes());
        match d.output {
            Ok(results) => {
                out.push(0);
                put_bytes(&mut out, &results);
                super::spare::give_back(results);
            }
            Err(e) => {
                out.push(1);
                put_bytes(&mut out, format!("[{}] {}", e.code(), e).as_bytes());
            }
        }
    }
    out
}

/// Encodes `outputs` (into a spare buffer when one is kept: the caller copies the results into a
/// JS Buffer and gives it back) and gives their packed arrays back to spare.rs.
pub fn encode_results(outputs: Vec<OpOutput>) -> Vec<u8> {
    let out = encode_outputs(&outputs);
    for output in outputs {
        for packed in [output.entries, output.values].into_iter().flatten() {
            super::spare::give_back(packed.bytes);
        }
    }
    out
}

fn encode_outputs(outputs: &[OpOutput]) -> Vec<u8> {
    let payload: usize = outputs.iter().map(payload_bytes).sum();
    let mut out = super::spare::take(4 + outputs.len() * 16 + payload);
    out.extend_from_slice(&(outputs.len() as u32).to_le_bytes());
    for o in outputs {
        let mut flags = 0u16;
        let mut set = |f: u16, on: bool| {
            if on {
                flags |= f;
            }
        };
        set(R_ERROR, o.error.is_some());
        set(R_VALUE, matches!(o.value, Some(Some(_))));
        set(R_VALUE_NULL, matches!(o.value, Some(None)));
        set(R_HAS_FOUND, o.found.is_some());
        set(R_FOUND, o.found == Some(true));
        set(R_VALUES, o.values.is_some());
        set(R_KEYS, o.keys.is_some());
        set(R_ENTRIES, o.entries.is_some());
        set(R_HAS_DONE, o.done.is_some());
        set(R_DONE, o.done == Some(true));
        set(R_CURSOR, o.cursor.is_some());
        set(R_TXN, o.txn.is_some());
        set(R_COMMIT_TS, o.commit_ts.is_some());
        set(R_EXPIRING, o.expiring.is_some());
        out.extend_from_slice(&flags.to_le_bytes());
        put_num(&mut out, o.seq as f64);
        if let Some(e) = &o.error {
            put_bytes(&mut out, e.code().as_bytes());
            put_bytes(&mut out, e.to_string().as_bytes());
        }
        if let Some(Some(v)) = &o.value {
            put_bytes(&mut out, v);
        }
        if let Some(values) = &o.values {
            out.extend_from_slice(&values.count.to_le_bytes());
            put_bytes(&mut out, &values.bytes);
        }
        if let Some(keys) = &o.keys {
            put_list(&mut out, keys);
        }
        if let Some(entries) = &o.entries {
            out.extend_from_slice(&entries.count.to_le_bytes());
            put_bytes(&mut out, &entries.bytes);
        }
        if let Some(expiring) = &o.expiring {
            out.extend_from_slice(&(expiring.len() as u32).to_le_bytes());
            for e in expiring {
                out.extend_from_slice(&e.start.to_le_bytes());
                out.extend_from_slice(&e.end.to_le_bytes());
                put_num(&mut out, e.at_ms as f64);
            }
        }
        if let Some(c) = o.cursor {
            put_num(&mut out, c as f64);
        }
        if let Some(t) = o.txn {
            put_num(&mut out, t as f64);
        }
        if let Some(ts) = o.commit_ts {
            out.extend_from_slice(&ts.to_le_bytes());
        }
    }
    out
}

fn payload_bytes(o: &OpOutput) -> usize {
    let list = |l: &Option<Vec<Vec<u8>>>| l.as_ref().map_or(0, |l| l.iter().map(|v| v.len() + 4).sum::<usize>() + 4);
    let value = match &o.value {
        Some(Some(v)) => v.len() + 4,
        _ => 0,
    };
    let values = o.values.as_ref().map_or(0, |v| v.bytes.len() + 8);
    let entries = o.entries.as_ref().map_or(0, |e| e.bytes.len() + 8);
    let expiring = o.expiring.as_ref().map_or(0, |e| e.len() * 16 + 4);
    value + values + list(&o.keys) + entries + expiring + 48
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_field_and_refuses_short_buffers() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&1u32.to_le_bytes());
        buf.push(8);
        buf.extend_from_slice(&(F_TXN | F_KEY | F_KEYS | F_RANGE | F_REVERSE | F_LIMIT | F_ISOLATION).to_le_bytes());
        put_num(&mut buf, 7.0);
        put_bytes(&mut buf, b"k");
        put_list(&mut buf, &[b"a".to_vec(), Vec::new()]);
        put_num(&mut buf, 10.0);
        buf.extend_from_slice(&1u32.to_le_bytes());
        let ops = decode_ops(&buf).unwrap();
        let op = &ops[0];
        assert_eq!((op.kind, op.txn, op.key.as_deref(), op.range, op.reverse, op.limit, op.isolation), (8, Some(7), Some(&b"k"[..]), true, true, Some(10.0), Some(1)));
        assert_eq!(op.keys, Some(vec![b"a".to_vec(), Vec::new()]));
        for cut in 0..buf.len() {
            assert!(decode_ops(&buf[..cut]).is_err(), "a buffer cut at {cut} must be refused");
        }
        let mut huge = 0xffff_ffffu32.to_le_bytes().to_vec();
        huge.extend_from_slice(&[0; 8]);
        assert!(decode_ops(&huge).is_err());
    }

    /// One op of kind 3 whose keys are `packed` (count `n`) as a packed list.
    fn packed_keys_op(n: u32, packed: &[u8]) -> Vec<u8> {
        let mut buf = 1u32.to_le_bytes().to_vec();
        buf.push(3);
        buf.extend_from_slice(&F_KEYS.to_le_bytes());
        buf.extend_from_slice(&(n | LIST_PACKED).to_le_bytes());
        put_bytes(&mut buf, packed);
        buf
    }

    #[test]
    fn decodes_packed_keys_in_every_bin_form_and_refuses_malformed_ones() {
        let long = [b'k'; 300];
        let mut packed = vec![0xc4, 1, b'a', 0xc4, 0];
        packed.extend_from_slice(&[0xc5, 0x01, 0x2c]);
        packed.extend_from_slice(&long);
        packed.extend_from_slice(&[0xc6, 0, 0, 0, 2, b'b', b'c']);
        let ops = decode_ops(&packed_keys_op(4, &packed)).unwrap();
        assert_eq!(ops[0].keys, Some(vec![b"a".to_vec(), Vec::new(), long.to_vec(), b"bc".to_vec()]));
        assert_eq!(decode_ops(&packed_keys_op(0, &[])).unwrap()[0].keys, Some(Vec::new()));
        // One bin too many or too few for the count, a bin cut short, a nil, a str, trailing bytes.
        for (n, bytes) in [
            (3, &packed[..]),
            (5, &packed[..]),
            (1, &[0xc4, 2, b'a'][..]),
            (1, &[0xc0][..]),
            (1, &[0xa1, b'a'][..]),
            (1, &[0xc4, 1, b'a', 0][..]),
            (1, &[0xc5, 0][..]),
            (u32::MAX >> 1, &[0xc4, 0][..]),
        ] {
            let refused = decode_ops(&packed_keys_op(n, bytes)).expect_err("malformed packed keys must be refused");
            assert!(matches!(refused, EngineError::InvalidArgument(_)), "{refused:?}");
        }
    }

    #[test]
    fn encodes_results_with_exact_size_hint() {
        let mut packed = super::super::wire::PackedArray::default();
        packed.push_pair(b"a", b"1");
        packed.push_pair(b"b", &[7u8; 300]);
        let mut values = super::super::wire::PackedArray::default();
        values.push_value(None);
        values.push_value(Some(b"x"));
        let outputs = vec![
            OpOutput { value: Some(Some(b"v".to_vec())), seq: 3, ..Default::default() },
            OpOutput { value: Some(None), ..Default::default() },
            OpOutput { values: Some(values), keys: Some(vec![b"k".to_vec()]), done: Some(true), ..Default::default() },
            OpOutput { error: Some(EngineError::TxnConflict), commit_ts: Some(9), ..Default::default() },
            OpOutput { entries: Some(packed.clone()), done: Some(false), cursor: Some(4), ..Default::default() },
        ];
        let out = encode_outputs(&outputs);
        assert_eq!(u32::from_le_bytes(out[..4].try_into().unwrap()), 5);
        let flags = u16::from_le_bytes(out[4..6].try_into().unwrap());
        assert_eq!(flags, R_VALUE);
        assert_eq!(f64::from_le_bytes(out[6..14].try_into().unwrap()), 3.0);
        // The scan batch is last: flags, seq, count, the packed bytes, the cursor.
        let tail = 2 + 8 + 4 + 4 + packed.bytes.len() + 8;
        let last = &out[out.len() - tail..];
        assert_eq!(u16::from_le_bytes(last[..2].try_into().unwrap()), R_ENTRIES | R_HAS_DONE | R_CURSOR);
        assert_eq!(u32::from_le_bytes(last[10..14].try_into().unwrap()), 2);
        assert_eq!(u32::from_le_bytes(last[14..18].try_into().unwrap()) as usize, packed.bytes.len());
        assert_eq!(&last[18..18 + packed.bytes.len()], packed.bytes.as_slice());
        assert!(out.capacity() >= out.len() && out.capacity() - out.len() <= 48 * outputs.len(), "the size hint covers the payload");
    }
}
