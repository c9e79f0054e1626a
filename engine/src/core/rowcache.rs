//! The row cache: recently written or read rows of the data keyspace, in memory.
//!
//! Responsibility: answer plain point reads (get, exists, getBatch outside transactions) without
//! any storage work, so the daemon can serve them on its JS thread instead of paying a libuv
//! pool round trip (a cross-CPU wake-up: ~35 µs on a 2-vCPU VM, against ~1 µs for the lookup).
//! Misses go to the pool as before; those reads refill the cache.
//!
//! Invariants:
//! - Coherence: a hit never shows a row older than one any reader could already have seen.
//!   Every commit (`Store::commit_with`, under the commit lock) calls `begin_commit` BEFORE it
//!   becomes visible: that marks a commit in progress (odd `epoch`) and stamps the `writing`
//!   slot of every key it writes with that epoch. Then `end_commit` replaces the cached rows of
//!   those keys (new rows in, deleted keys out) and ends the mark. A single `lookup` is answered
//!   only if its key's slot carries no stamp of the commit running when it began, nor of any
//!   later one (stamps only grow: commits are serialised). The slot is read after the lookup,
//!   so a commit that was visible before the lookup began, yet had not cached its row when the
//!   lookup ran, is always caught. Slots are shared by hash: a lookup of a key that merely
//!   shares a slot with a written one misses, which costs a storage read, never a stale row.
//!   (Evicting every written key before its commit, as this did first, cost a cache removal
//!   per write: ~15 % of a lane's time under putBatch.)
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
//! - Keys and rows are fjall `Slice`s: a commit caches the very value it hands to fjall (a
//!   reference count, no copy), and a key of up to 20 bytes lives inline (no allocation).

use fjall::Slice;
use quick_cache::sync::Cache;
use quick_cache::Weighter;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bookkeeping per cached row on top of its key and value bytes (entry, slice headers, hashing).
const ROW_OVERHEAD_BYTES: u64 = 64;

/// Default capacity; `OpenOptions::row_cache_bytes` overrides it (0 disables the cache).
pub const ROW_CACHE_BYTES_DEFAULT: u64 = 32 * 1024 * 1024;

/// Runs up to this many writes find repeated keys by a linear scan (no hash set).
const RUN_SCAN_ITEMS_MAX: usize = 16;

/// Slots of the `writing` stamps (a power of two; 32 KiB). A commit of n keys makes about
/// n / WRITING_SLOTS of the other keys' lookups miss while it runs.
const WRITING_SLOTS: usize = 4096;

/// A row in stored form, shared between the cache, fjall and the lookups that hit it.
pub type Row = Slice;

#[derive(Clone)]
struct RowWeighter;

impl Weighter<Slice, Row> for RowWeighter {
    fn weight(&self, key: &Slice, row: &Row) -> u64 {
        key.len() as u64 + row.len() as u64 + ROW_OVERHEAD_BYTES
    }
}

/// What one commit does to the cache: the stored rows it leaves (the last write of each key)
/// and the keys it deletes. TTL sweeps only delete.
#[derive(Default)]
pub struct RowWrites {
    pub rows: Vec<(Slice, Row)>,
    pub deleted: Vec<Slice>,
}

impl RowWrites {
    fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.rows.iter().map(|(key, _)| &**key).chain(self.deleted.iter().map(|key| &**key))
    }
}

/// How a commit ended, for `end_commit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitEnd {
    /// Visible: its rows replace the cached ones.
    Applied,
    /// Refused before applying anything (a transaction conflict): the cached rows still hold.
    Refused,
    /// Failed: whether anything applied is not known, so its keys leave the cache.
    Failed,
}

pub struct RowCache {
    rows: Option<Cache<Slice, Row, RowWeighter>>,
    /// Odd while a commit is in progress; +2 per commit.
    epoch: AtomicU64,
    /// Per key-hash slot: the (odd) epoch of the last commit that wrote a key of that slot.
    /// Only ever grows.
    writing: Box<[AtomicU64]>,
}

fn slot_of(key: &[u8]) -> usize {
    xxhash_rust::xxh3::xxh3_64(key) as usize & (WRITING_SLOTS - 1)
}

impl RowCache {
    pub fn new(capacity_bytes: u64) -> RowCache {
        let rows = (capacity_bytes > 0).then(|| {
            // The item estimate only sizes the hash tables; the weight bound is what holds.
            let items = (capacity_bytes / (ROW_OVERHEAD_BYTES + 128)).max(16) as usize;
            Cache::with_weighter(items, capacity_bytes, RowWeighter)
        });
        let writing = (0..WRITING_SLOTS).map(|_| AtomicU64::new(0)).collect();
        RowCache { rows, epoch: AtomicU64::new(0), writing }
    }

    /// The stored row of `key`, if cached and current (see the header).
    pub fn lookup(&self, key: &[u8]) -> Option<Row> {
        let rows = self.rows.as_ref()?;
        let before = self.epoch.load(Ordering::SeqCst);
        let row = rows.get(key)?;
        // Not a key of the commit running at `before` or of any later one (stamps only grow).
        (self.writing[slot_of(key)].load(Ordering::SeqCst) < before | 1).then_some(row)
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
    pub fn fill(&self, ticket: u64, read: impl IntoIterator<Item = (Slice, Row)>) {
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
        assert!(before & 1 == 0, "invariant: row cache commits overlap");
        if self.rows.is_some() {
            for key in writes.keys() {
                self.writing[slot_of(key)].store(before + 1, Ordering::SeqCst);
            }
        }
    }

    /// Caller holds the commit lock; `end` says how the commit ended.
    pub fn end_commit(&self, writes: RowWrites, end: CommitEnd) {
        if let Some(rows) = &self.rows {
            match end {
                CommitEnd::Applied => {
                    for key in &writes.deleted {
                        rows.remove(&**key);
                    }
                    for (key, row) in writes.rows {
                        rows.insert(key, row);
                    }
                }
                CommitEnd::Refused => {}
                CommitEnd::Failed => {
                    for key in writes.keys() {
                        rows.remove(key);
                    }
                }
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
    /// a delete), as slices (clones of the ones the commit hands to fjall are cheap).
    pub fn of_run<T>(items: &[T], last: &[bool], parts: impl Fn(&T) -> (Slice, Option<Row>)) -> RowWrites {
        let mut writes = RowWrites { rows: Vec::with_capacity(items.len()), deleted: Vec::new() };
        for (item, _) in items.iter().zip(last).filter(|(_, last)| **last) {
            match parts(item) {
                (key, Some(stored)) => writes.rows.push((key, stored)),
                (key, None) => writes.deleted.push(key),
            }
        }
        writes
    }

    /// A commit that only deletes `keys` (TTL sweeps).
    pub fn evict(keys: &[Vec<u8>]) -> RowWrites {
        RowWrites { rows: Vec::new(), deleted: keys.iter().map(|key| Slice::from(key.as_slice())).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn run(items: &[(&[u8], Option<&[u8]>)]) -> RowWrites {
        RowWrites::of_run(items, &last_writes(items, |(key, _)| key), |&(key, stored)| (Slice::from(key), stored.map(Row::from)))
    }

    #[test]
    fn last_write_of_a_key_wins_in_a_run() {
        let writes = run(&[(b"a", Some(b"1")), (b"a", None), (b"b", Some(b"1")), (b"b", Some(b"2"))]);
        assert_eq!(writes.deleted, vec![Slice::from(b"a")]);
        assert_eq!(writes.rows, vec![(Slice::from(b"b"), Row::from(b"2"))]);
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

    fn filled(rows: &[(&[u8], &[u8])]) -> RowCache {
        let cache = RowCache::new(1 << 20);
        cache.fill(cache.fill_ticket(), rows.iter().map(|&(key, row)| (Slice::from(key), Row::from(row))));
        cache
    }

    /// A key that shares no `writing` slot with `key`.
    fn other_slot_key(key: &[u8]) -> Vec<u8> {
        (0u32..).map(|i| format!("other{i}").into_bytes()).find(|other| slot_of(other) != slot_of(key)).unwrap()
    }

    #[test]
    fn a_commit_hides_its_keys_while_it_runs_and_caches_its_rows_after() {
        let other = other_slot_key(b"k");
        let cache = filled(&[(b"k", b"old"), (b"gone", b"x"), (&other, b"o")]);
        assert_eq!(cache.lookup(b"k").as_deref(), Some(&b"old"[..]));
        let writes = run(&[(b"k", Some(b"new")), (b"gone", None)]);
        cache.begin_commit(&writes);
        assert!(cache.lookup(b"k").is_none(), "a written key misses while its commit runs");
        assert!(cache.lookup(b"gone").is_none(), "so does a deleted one");
        assert_eq!(cache.lookup(&other).as_deref(), Some(&b"o"[..]), "other keys still hit");
        assert!(cache.lookup_all(&[other.clone(), other.clone()]).is_none(), "multi-key lookups wait for the commit");
        cache.end_commit(writes, CommitEnd::Applied);
        assert_eq!(cache.lookup_all(&[b"k".to_vec()]).unwrap()[0].as_ref(), b"new");
        assert_eq!(cache.lookup(b"k").as_deref(), Some(&b"new"[..]));
        assert!(cache.lookup(b"gone").is_none());
        // The stamp of an ended commit hides nothing from the next one.
        cache.begin_commit(&run(&[(&other, Some(b"o2"))]));
        assert_eq!(cache.lookup(b"k").as_deref(), Some(&b"new"[..]));
    }

    #[test]
    fn a_hit_is_never_older_than_what_was_visible_before_the_lookup() {
        // A writer commits 1, 2, 3, ... to one key ("visible" stands for fjall's visible row)
        // while readers look it up: a hit must be at least the value visible when it began.
        use std::sync::atomic::AtomicBool;
        let cache = Arc::new(filled(&[(b"k", &0u64.to_le_bytes())]));
        let visible = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (cache, visible, stop, hits) = (cache.clone(), visible.clone(), stop.clone(), hits.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let floor = visible.load(Ordering::SeqCst);
                        if let Some(row) = cache.lookup(b"k") {
                            let seen = u64::from_le_bytes(row[..8].try_into().unwrap());
                            assert!(seen >= floor, "hit {seen} after {floor} was visible");
                            hits.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        // Until the readers have hit often (bounded: a machine too busy to run them fails).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut value = 0u64;
        while (value < 20_000 || hits.load(Ordering::SeqCst) < 10_000) && std::time::Instant::now() < deadline {
            value += 1;
            let writes = run(&[(b"k", Some(&value.to_le_bytes()))]);
            cache.begin_commit(&writes);
            visible.store(value, Ordering::SeqCst);
            cache.end_commit(writes, CommitEnd::Applied);
        }
        stop.store(true, Ordering::SeqCst);
        for reader in readers {
            reader.join().unwrap();
        }
        assert!(hits.load(Ordering::SeqCst) >= 10_000, "the readers hit while commits ran");
    }

    #[test]
    fn refused_commits_keep_the_cached_rows_and_failed_ones_drop_them() {
        let cache = filled(&[(b"k", b"old")]);
        let writes = run(&[(b"k", Some(b"new"))]);
        cache.begin_commit(&writes);
        cache.end_commit(writes, CommitEnd::Refused);
        assert_eq!(cache.lookup(b"k").as_deref(), Some(&b"old"[..]), "a conflict applied nothing");
        let writes = run(&[(b"k", Some(b"new"))]);
        cache.begin_commit(&writes);
        cache.end_commit(writes, CommitEnd::Failed);
        assert!(cache.lookup(b"k").is_none(), "a failure may have applied anything");
    }

    #[test]
    fn a_fill_that_overlapped_a_commit_is_refused() {
        let cache = RowCache::new(1 << 20);
        let ticket = cache.fill_ticket();
        let writes = run(&[(b"k", None)]);
        cache.begin_commit(&writes);
        cache.end_commit(writes, CommitEnd::Applied);
        cache.fill(ticket, [(Slice::from(b"k"), Row::from(b"stale"))]);
        assert!(cache.lookup(b"k").is_none());
        // Sampled during a commit: refused too.
        let writes = run(&[(b"j", None)]);
        cache.begin_commit(&writes);
        let during = cache.fill_ticket();
        cache.end_commit(writes, CommitEnd::Refused);
        cache.fill(during, [(Slice::from(b"j"), Row::from(b"x"))]);
        assert!(cache.lookup(b"j").is_none());
    }

    #[test]
    fn unapplied_commits_cache_nothing_and_capacity_zero_disables() {
        let cache = RowCache::new(1 << 20);
        for end in [CommitEnd::Refused, CommitEnd::Failed] {
            let writes = run(&[(b"k", Some(b"v"))]);
            cache.begin_commit(&writes);
            cache.end_commit(writes, end);
            assert!(cache.lookup(b"k").is_none());
        }
        let off = RowCache::new(0);
        off.fill(off.fill_ticket(), [(Slice::from(b"k"), Row::from(b"v"))]);
        assert!(off.lookup(b"k").is_none());
    }
}
