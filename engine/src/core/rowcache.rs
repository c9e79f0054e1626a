//! The row cache: recently written or read rows of the data keyspace, in memory.
//!
//! Responsibility: answer plain point reads (get, exists, getBatch outside transactions) without
//! any storage work, so the daemon can serve them on its JS thread instead of paying a libuv
//! pool round trip (a cross-CPU wake-up: ~35 µs on a 2-vCPU VM, against ~1 µs for the lookup).
//! Misses go to the pool as before; those reads refill the cache.
//!
//! Invariants:
//! - Coherence: a cached row always equals the row fjall currently makes visible. Every commit
//!   (`Store::commit_tx`, under the commit lock) calls `begin_commit`, which marks a commit in
//!   progress (odd `epoch`) and evicts every key the commit writes BEFORE the commit becomes
//!   visible, then `end_commit`, which caches the new rows (if it applied) and ends the mark.
//!   So a hit never shows a row older than one any reader could already have seen.
//! - A fill from a storage read is stale if a commit ran (or was running) between the read and
//!   the fill; `fill` is given the epoch sampled before the read and refuses unless it was even
//!   and is unchanged. Fills run under the commit lock, so no commit can start during one.
//! - A multi-key lookup (`lookup_all`) is one consistent state: it is answered only if the epoch
//!   was even before the lookups and unchanged after them, so it never mixes rows from before
//!   and after one commit (a transaction's writes stay atomic to getBatch).
//! - Memory is bounded by `capacity_bytes` (keys + stored values + a per-row overhead); the
//!   cache evicts (S3-FIFO, quick_cache) beyond it. No lock of the cache is held across I/O.
//! - Values are kept in stored form (value.rs: TTL header + bytes), so an expired row is caught
//!   by the same `value::live` check as a row read from storage.

use quick_cache::sync::Cache;
use quick_cache::Weighter;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bookkeeping per cached row on top of its key and value bytes (entry, Arc header, hashing).
const ROW_OVERHEAD_BYTES: u64 = 64;

/// Default capacity; `OpenOptions::row_cache_bytes` overrides it (0 disables the cache).
pub const ROW_CACHE_BYTES_DEFAULT: u64 = 32 * 1024 * 1024;

/// Runs up to this many writes find repeated keys by a linear scan (no hash set).
const RUN_SCAN_ITEMS_MAX: usize = 16;

/// A row in stored form, shared between the cache and the lookups that hit it.
pub type Row = Arc<[u8]>;

#[derive(Clone)]
struct RowWeighter;

impl Weighter<Vec<u8>, Row> for RowWeighter {
    fn weight(&self, key: &Vec<u8>, row: &Row) -> u64 {
        key.len() as u64 + row.len() as u64 + ROW_OVERHEAD_BYTES
    }
}

/// What one commit does to the cache: every key it writes, and the stored rows it leaves
/// (the last write of each key; deleted keys have none). TTL sweeps only evict.
#[derive(Default)]
pub struct RowWrites {
    pub keys: Vec<Vec<u8>>,
    pub rows: Vec<(Vec<u8>, Vec<u8>)>,
}

pub struct RowCache {
    rows: Option<Cache<Vec<u8>, Row, RowWeighter>>,
    /// Odd while a commit is in progress; +2 per commit.
    epoch: AtomicU64,
}

impl RowCache {
    pub fn new(capacity_bytes: u64) -> RowCache {
        let rows = (capacity_bytes > 0).then(|| {
            // The item estimate only sizes the hash tables; the weight bound is what holds.
            let items = (capacity_bytes / (ROW_OVERHEAD_BYTES + 128)).max(16) as usize;
            Cache::with_weighter(items, capacity_bytes, RowWeighter)
        });
        RowCache { rows, epoch: AtomicU64::new(0) }
    }

    /// The stored row of `key`, if cached. A single lookup is always current (see the header).
    pub fn lookup(&self, key: &[u8]) -> Option<Row> {
        self.rows.as_ref()?.get(key)
    }

    /// The stored rows of all `keys` from one consistent state, or None if any is not cached
    /// or a commit overlapped the lookups.
    pub fn lookup_all(&self, keys: &[Vec<u8>]) -> Option<Vec<Row>> {
        let rows = self.rows.as_ref()?;
        let before = self.epoch.load(Ordering::SeqCst);
        if before & 1 == 1 {
            return None;
        }
        let found = keys.iter().map(|key| rows.get(key.as_slice())).collect::<Option<Vec<_>>>()?;
        (self.epoch.load(Ordering::SeqCst) == before).then_some(found)
    }

    /// Sample taken before a storage read whose rows may later be offered to `fill`.
    pub fn fill_ticket(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Caches rows read from storage, unless a commit ran or was running since `ticket` was
    /// taken. Caller holds the commit lock (no commit can start meanwhile).
    pub fn fill(&self, ticket: u64, read: impl IntoIterator<Item = (Vec<u8>, Row)>) {
        let Some(rows) = &self.rows else { return };
        if ticket & 1 == 1 || self.epoch.load(Ordering::SeqCst) != ticket {
            return;
        }
        for (key, row) in read {
            rows.insert(key, row);
        }
    }

    /// Caller holds the commit lock; the commit must not be visible yet.
    pub fn begin_commit(&self, writes: &RowWrites) {
        let before = self.epoch.fetch_add(1, Ordering::SeqCst);
        debug_assert!(before & 1 == 0, "invariant: row cache commits overlap");
        if let Some(rows) = &self.rows {
            for key in &writes.keys {
                rows.remove(key.as_slice());
            }
        }
    }

    /// Caller holds the commit lock; `applied` says whether the commit became visible.
    pub fn end_commit(&self, writes: RowWrites, applied: bool) {
        if let (Some(rows), true) = (&self.rows, applied) {
            for (key, stored) in writes.rows {
                rows.insert(key, Row::from(stored));
            }
        }
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    pub fn stats(&self) -> (u64, u64) {
        self.rows.as_ref().map_or((0, 0), |rows| (rows.len() as u64, rows.weight()))
    }
}

/// For a run of writes applied in order, which item is the last write of its key (true): the
/// one that wins. Short runs (the common case) find repeated keys by a scan instead of hashing.
pub fn last_writes<T>(items: &[T], key: impl Fn(&T) -> &[u8]) -> Vec<bool> {
    let mut last = vec![false; items.len()];
    let mut seen = (items.len() > RUN_SCAN_ITEMS_MAX).then(std::collections::HashSet::new);
    for index in (0..items.len()).rev() {
        let here = key(&items[index]);
        let repeated = match &mut seen {
            Some(seen) => !seen.insert(here),
            None => (index + 1..items.len()).any(|later| last[later] && key(&items[later]) == here),
        };
        last[index] = !repeated;
    }
    last
}

impl RowWrites {
    /// The cache effect of a run of writes applied in order: `last` (from `last_writes`) marks
    /// the write of each key that wins; `parts` gives an item's key and stored value (None for
    /// a delete).
    pub fn of_run<T>(items: &[T], last: &[bool], parts: impl Fn(&T) -> (&[u8], Option<&[u8]>)) -> RowWrites {
        let mut writes = RowWrites { keys: Vec::with_capacity(items.len()), rows: Vec::with_capacity(items.len()) };
        for (item, _) in items.iter().zip(last).filter(|(_, last)| **last) {
            let (key, stored) = parts(item);
            writes.keys.push(key.to_vec());
            if let Some(stored) = stored {
                writes.rows.push((key.to_vec(), stored.to_vec()));
            }
        }
        writes
    }

    /// A commit that only evicts `keys` (TTL sweeps).
    pub fn evict(keys: Vec<Vec<u8>>) -> RowWrites {
        RowWrites { keys, rows: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(items: &[(&[u8], Option<&[u8]>)]) -> RowWrites {
        RowWrites::of_run(items, &last_writes(items, |(key, _)| key), |&(key, stored)| (key, stored))
    }

    #[test]
    fn last_write_of_a_key_wins_in_a_run() {
        let writes = run(&[(b"a", Some(b"1")), (b"a", None), (b"b", Some(b"1")), (b"b", Some(b"2"))]);
        assert_eq!(writes.keys.len(), 2);
        assert_eq!(writes.rows, vec![(b"b".to_vec(), b"2".to_vec())]);
    }

    #[test]
    fn last_writes_agree_between_the_scan_and_the_hash_set() {
        // Short runs scan, long runs hash: both must mark the last write of each key.
        for len in [3usize, RUN_SCAN_ITEMS_MAX, RUN_SCAN_ITEMS_MAX + 1, 200] {
            let keys: Vec<Vec<u8>> = (0..len).map(|i| vec![(i * 7 % 5) as u8]).collect();
            let last = last_writes(&keys, |k| k);
            for (i, key) in keys.iter().enumerate() {
                assert_eq!(last[i], !keys[i + 1..].contains(key), "len {len}, item {i}");
            }
        }
    }

    #[test]
    fn commits_evict_before_and_cache_after() {
        let cache = RowCache::new(1 << 20);
        let ticket = cache.fill_ticket();
        cache.fill(ticket, [(b"k".to_vec(), Row::from(&b"old"[..]))]);
        assert_eq!(cache.lookup(b"k").as_deref(), Some(&b"old"[..]));
        let writes = run(&[(b"k", Some(b"new"))]);
        cache.begin_commit(&writes);
        assert!(cache.lookup(b"k").is_none(), "evicted while the commit is in progress");
        assert!(cache.lookup_all(&[b"k".to_vec()]).is_none());
        cache.end_commit(writes, true);
        assert_eq!(cache.lookup_all(&[b"k".to_vec()]).unwrap()[0].as_ref(), b"new");
    }

    #[test]
    fn a_fill_that_overlapped_a_commit_is_refused() {
        let cache = RowCache::new(1 << 20);
        let ticket = cache.fill_ticket();
        let writes = run(&[(b"k", None)]);
        cache.begin_commit(&writes);
        cache.end_commit(writes, true);
        cache.fill(ticket, [(b"k".to_vec(), Row::from(&b"stale"[..]))]);
        assert!(cache.lookup(b"k").is_none());
        // Sampled during a commit: refused too.
        let writes = run(&[(b"j", None)]);
        cache.begin_commit(&writes);
        let during = cache.fill_ticket();
        cache.end_commit(writes, false);
        cache.fill(during, [(b"j".to_vec(), Row::from(&b"x"[..]))]);
        assert!(cache.lookup(b"j").is_none());
    }

    #[test]
    fn failed_commits_cache_nothing_and_capacity_zero_disables() {
        let cache = RowCache::new(1 << 20);
        let writes = run(&[(b"k", Some(b"v"))]);
        cache.begin_commit(&writes);
        cache.end_commit(writes, false);
        assert!(cache.lookup(b"k").is_none());
        let off = RowCache::new(0);
        off.fill(off.fill_ticket(), [(b"k".to_vec(), Row::from(&b"v"[..]))]);
        assert!(off.lookup(b"k").is_none());
    }
}
