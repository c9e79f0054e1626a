//! Read views: one way to get and range-read, whatever the reader is.
//!
//! Responsibility: give ops, cursors and `listPath` one read interface over
//! - a fjall `Snapshot` (non-transactional reads and cursors),
//! - a serializable fjall `WriteTransaction` (reads and ranges are marked, so fjall's oracle
//!   detects write skew and phantoms; own writes are merged by fjall),
//! - a snapshot-isolation transaction: its `Snapshot` plus its own write overlay (reads are NOT
//!   marked; the overlay wins over the snapshot, `None` in it is a delete).
//!
//! Invariants: entries come out in bytewise key order (descending when reversed), each key once;
//! values are in stored form (see value.rs) — callers filter expired entries. Range entries are
//! fjall's own `Slice`s, not copies of them: a scan copies each entry once, into its result.

use super::error::EngineResult;
use fjall::{OptimisticTxKeyspace, OptimisticWriteTx as WriteTransaction, Readable, Slice, Snapshot};
use std::collections::BTreeMap;
use std::ops::Bound;

pub type Overlay = BTreeMap<Vec<u8>, Option<Vec<u8>>>;
pub type Entry = (Slice, Slice);
pub type Bounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);
type EntryIter<'a> = Box<dyn Iterator<Item = EngineResult<Entry>> + 'a>;

pub enum View<'a> {
    Snap(&'a Snapshot),
    Serial(&'a WriteTransaction),
    Iso { snap: &'a Snapshot, overlay: &'a Overlay },
}

impl<'a> View<'a> {
    pub fn get(&self, ks: &OptimisticTxKeyspace, key: &[u8]) -> EngineResult<Option<Vec<u8>>> {
        let found = match self {
            View::Snap(snap) => snap.get(ks, key)?,
            View::Serial(tx) => tx.get(ks, key)?,
            View::Iso { snap, overlay } => match overlay.get(key) {
                Some(own) => return Ok(own.clone()),
                None => snap.get(ks, key)?,
            },
        };
        Ok(found.map(|v| v.to_vec()))
    }

    /// Iterates `bounds` in key order (or reverse). Empty when the bounds are inverted.
    pub fn range(&self, ks: &'a OptimisticTxKeyspace, bounds: Bounds, reverse: bool) -> EntryIter<'a> {
        if is_empty_range(&bounds) {
            return Box::new(std::iter::empty());
        }
        match self {
            View::Snap(snap) => fjall_iter(snap.range(ks, bounds), reverse),
            View::Serial(tx) => fjall_iter(tx.range(ks, bounds), reverse),
            View::Iso { snap, overlay } => {
                let own: Vec<(Slice, Option<Slice>)> = overlay
                    .range(bounds.clone())
                    .map(|(k, v)| (Slice::from(k.as_slice()), v.as_deref().map(Slice::from)))
                    .collect();
                let base = fjall_iter(snap.range(ks, bounds), reverse);
                let own: Box<dyn Iterator<Item = _>> =
                    if reverse { Box::new(own.into_iter().rev()) } else { Box::new(own.into_iter()) };
                Box::new(Merge { base: base.peekable(), own: own.peekable(), reverse })
            }
        }
    }
}

fn fjall_iter<'a>(iter: fjall::Iter, reverse: bool) -> EntryIter<'a> {
    let convert = |guard: fjall::Guard| -> EngineResult<Entry> { Ok(guard.into_inner()?) };
    if reverse {
        Box::new(iter.rev().map(convert))
    } else {
        Box::new(iter.map(convert))
    }
}

/// True when no key can satisfy the bounds (start after end). fjall must never see such a range.
pub fn is_empty_range(bounds: &Bounds) -> bool {
    let (lo, lo_inclusive) = match &bounds.0 {
        Bound::Unbounded => return false,
        Bound::Included(k) => (k, true),
        Bound::Excluded(k) => (k, false),
    };
    match &bounds.1 {
        Bound::Unbounded => false,
        Bound::Included(hi) => lo > hi || (lo == hi && !lo_inclusive),
        Bound::Excluded(hi) => lo >= hi,
    }
}

/// Smallest key greater than every key that starts with `prefix`; None when there is none.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

pub fn prefix_bounds(prefix: &[u8]) -> Bounds {
    let hi = prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded);
    (Bound::Included(prefix.to_vec()), hi)
}

/// Merges own writes over base entries; on equal keys the own write wins (None hides the key).
struct Merge<'a, O: Iterator<Item = (Slice, Option<Slice>)>> {
    base: std::iter::Peekable<EntryIter<'a>>,
    own: std::iter::Peekable<O>,
    reverse: bool,
}

impl<'a, O: Iterator<Item = (Slice, Option<Slice>)>> Iterator for Merge<'a, O> {
    type Item = EngineResult<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let take_own = match (self.base.peek(), self.own.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) => return self.base.next(),
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (Some(Ok((bk, _))), Some((ok, _))) => {
                    if bk == ok {
                        self.base.next(); // shadowed by the own write
                        true
                    } else {
                        (ok < bk) != self.reverse
                    }
                }
            };
            if !take_own {
                return self.base.next();
            }
            if let Some((k, Some(v))) = self.own.next() {
                return Some(Ok((k, v)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_handles_ff() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn empty_ranges() {
        let b = |lo: &[u8], hi: &[u8]| (Bound::Included(lo.to_vec()), Bound::Excluded(hi.to_vec()));
        assert!(is_empty_range(&b(b"b", b"a")));
        assert!(is_empty_range(&b(b"a", b"a")));
        assert!(!is_empty_range(&b(b"a", b"b")));
    }
}
