//! Stored value layout and TTL expiry.
//!
//! Responsibility: wrap user values in a small header so a value can carry an absolute expiry.
//!
//! Layout (normative for the on-disk format of the `data` keyspace):
//!   flags: u8            0x00 = no expiry, 0x01 = expiry follows
//!   expiry_ms: u64 BE    only when flags & 0x01; milliseconds since the Unix epoch
//!   user value bytes     possibly empty (an empty value is a value)
//!
//! The `ttl` keyspace indexes expiring keys as `expiry_ms BE ‖ user key` -> empty, so a sweep
//! reads due entries in expiry order without scanning the data.
//!
//! Invariants: a value with `expiry_ms <= now_ms` is invisible to every read; a decoded header
//! never reads past the stored bytes (a truncated header is reported as corruption).

use super::error::{EngineError, EngineResult};
use fjall::Slice;
use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

const FLAG_TTL: u8 = 0x01;
pub const TTL_HEADER_BYTES: usize = 9;

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The header of a stored value with an optional absolute expiry: its bytes and its length.
fn header(expiry_ms: Option<u64>) -> ([u8; TTL_HEADER_BYTES], usize) {
    let mut header = [0u8; TTL_HEADER_BYTES];
    match expiry_ms {
        None => (header, 1),
        Some(at) => {
            header[0] = FLAG_TTL;
            header[1..].copy_from_slice(&at.to_be_bytes());
            (header, TTL_HEADER_BYTES)
        }
    }
}

/// Builds the stored form of `value` with an optional absolute expiry.
pub fn encode(value: &[u8], expiry_ms: Option<u64>) -> Vec<u8> {
    let (header, len) = header(expiry_ms);
    let mut out = Vec::with_capacity(len + value.len());
    out.extend_from_slice(&header[..len]);
    out.extend_from_slice(value);
    out
}

/// `encode` straight into a fjall slice (one allocation, which fjall and the row cache share).
pub fn encode_slice(value: &[u8], expiry_ms: Option<u64>) -> Slice {
    let (header, len) = header(expiry_ms);
    let mut parts = (&header[..len]).chain(value);
    Slice::from_reader(&mut parts, len + value.len()).expect("invariant: in-memory bytes of exactly the length read")
}

/// Splits a stored value into (expiry, user value).
pub fn decode(stored: &[u8]) -> EngineResult<(Option<u64>, &[u8])> {
    match stored.first() {
        Some(0) => Ok((None, &stored[1..])),
        Some(&FLAG_TTL) if stored.len() >= TTL_HEADER_BYTES => {
            let mut at = [0u8; 8];
            at.copy_from_slice(&stored[1..TTL_HEADER_BYTES]);
            Ok((Some(u64::from_be_bytes(at)), &stored[TTL_HEADER_BYTES..]))
        }
        _ => Err(EngineError::Corruption(format!("stored value has a bad header ({} bytes)", stored.len()))),
    }
}

/// Whether a value with this expiry is gone at `now` (the one expiry rule every read applies).
pub fn expired(expiry: Option<u64>, now: u64) -> bool {
    expiry.is_some_and(|at| at <= now)
}

/// The user value if it is still live at `now`.
pub fn live(stored: &[u8], now: u64) -> EngineResult<Option<&[u8]>> {
    let (expiry, value) = decode(stored)?;
    Ok((!expired(expiry, now)).then_some(value))
}

pub fn expiry_of(stored: &[u8]) -> EngineResult<Option<u64>> {
    Ok(decode(stored)?.0)
}

/// Key of the `ttl` index entry for `key` expiring at `at`.
pub fn ttl_index_key(at: u64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len());
    out.extend_from_slice(&at.to_be_bytes());
    out.extend_from_slice(key);
    out
}

pub fn split_ttl_index_key(index_key: &[u8]) -> EngineResult<(u64, &[u8])> {
    if index_key.len() < 8 {
        return Err(EngineError::Corruption("ttl index key shorter than 8 bytes".into()));
    }
    let mut at = [0u8; 8];
    at.copy_from_slice(&index_key[..8]);
    Ok((u64::from_be_bytes(at), &index_key[8..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_expires() {
        assert_eq!(decode(&encode(b"", None)).unwrap(), (None, &b""[..]));
        for expiry in [None, Some(100)] {
            assert_eq!(&*encode_slice(b"value", expiry), &encode(b"value", expiry)[..]);
        }
        let stored = encode(b"v", Some(100));
        assert_eq!(live(&stored, 99).unwrap(), Some(&b"v"[..]));
        assert_eq!(live(&stored, 100).unwrap(), None);
        assert!(decode(&[]).is_err());
        assert!(decode(&[1, 0, 0]).is_err());
        let k = ttl_index_key(7, b"\x00k");
        assert_eq!(split_ttl_index_key(&k).unwrap(), (7, &b"\x00k"[..]));
    }
}
