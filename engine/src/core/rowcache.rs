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
//!   those keys (new rows in, deleted keys out) and ends the mark. A single `lookup_with` is answered
//!   only if its key's slot carries no stamp of the commit running when it began, nor of any
//!   later one (stamps only grow: commits are serialised). The slot is read after the lookup,
//!   so a commit that was visible before the lookup began, yet had not cached its row when the
//!   lookup ran, is always caught. Slots are shared by hash: a lookup of a key that merely
//!   shares a slot with a written one misses, which costs a storage read, never a stale row.
//!   (Evicting every written key before its commit, as this did first, cost a cache removal
//!   per write: ~15 % of a lane's time under putBatch.)
//! - Deferred cache effects: a lane (lanes.rs) leaves a commit's cache effect (new rows in,
//!   deleted keys out) in a queue instead of applying it under the commit lock, and applies
//!   the queue when it has no call to run, so the writes' results and their fsync request do
//!   not wait for ~20 % of a lane's work (cache inserts and releasing the replaced rows). Until
//!   an effect is applied its keys' slots count it in `unapplied`, and a lookup in a slot with
//!   any unapplied effect misses; it reads that count BEFORE its cache read, so a count of 0
//!   means every effect of the commits visible by then is already in the cache. Effects apply
//!   one at a time, in commit order (they are queued under the commit lock and applied under
//!   `applying`), so the last one of a key wins. Commits on other threads apply the queue,
//!   theirs included, before they return (the JS thread's `write_now` declines while effects
//!   are queued, so it never applies a lane's). The queue holds at most DEFERRED_KEYS_MAX
//!   keys: past that a lane applies it before going on.
//! - A fill from a storage read is stale if a commit ran (or was running) between the read and
//!   the fill; `fill` is given the epoch sampled before the read and refuses unless it was even
//!   and is unchanged. Fills run under the commit lock, so no commit can start during one.
//! - A multi-key lookup (`lookup_all_with`) is one consistent state: it is answered only if the epoch
//!   was even before the lookups and unchanged after them, so it never mixes rows from before
//!   and after one commit (a transaction's writes stay atomic to getBatch).
//! - Memory is bounded by `capacity_bytes` (keys + stored values + a per-row overhead); each of
//!   ROW_SHARDS shards evicts (S3-FIFO, quick_cache) beyond its share. No lock of the cache is
//!   held across I/O, and a lookup's reader runs under shard read locks only: it takes no other
//!   lock (so readers, which lock shards in index order, and writers, which hold one shard at a
//!   time, never wait on each other in a cycle).
//! - Lookups lend the cached rows to a reader under the shard's read lock instead of returning
//!   clones: a hit then costs no reference-count increment and decrement, and a multi-key
//!   lookup takes each shard's lock once, not once per key (x86 runs every atomic
//!   read-modify-write as a full fence, which kept a batch's cache misses from overlapping).
//! - Values are kept in stored form (value.rs: TTL header + bytes), so an expired row is caught
//!   by the same `value::live` check as a row read from storage.
//! - Keys and rows are fjall `Slice`s: a commit caches the very value it hands to fjall (a
//!   reference count, no copy), and a key of up to 20 bytes lives inline (no allocation).

use fjall::Slice;
use quick_cache::unsync::Cache;
use quick_cache::Weighter;
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

/// Bookkeeping per cached row on top of its key and value bytes (entry, slice headers, hashing).
const ROW_OVERHEAD_BYTES: u64 = 64;

/// Default capacity; `OpenOptions::row_cache_bytes` overrides it (0 disables the cache).
pub const ROW_CACHE_BYTES_DEFAULT: u64 = 32 * 1024 * 1024;

/// Runs up to this many writes find repeated keys by a linear scan (no hash set).
const RUN_SCAN_ITEMS_MAX: usize = 16;

/// Shards of the cached rows (a power of two, at most 64: a lookup's shards are a u64 mask).
const ROW_SHARDS: usize = 16;

/// Key-hash slots (a power of two; 16 bytes each, 64 KiB). A commit of n keys makes about
/// n / WRITING_SLOTS of the other keys' lookups miss while it runs (or its effect is queued).
const WRITING_SLOTS: usize = 4096;

/// Keys whose cache effects a lane may leave queued before it applies them itself.
const DEFERRED_KEYS_MAX: usize = 8192;

thread_local! {
    /// Whether commits on this thread leave their cache effects queued (lane threads).
    static DEFERS_HERE: Cell<bool> = const { Cell::new(false) };
}

/// Makes this thread's commits leave their cache effects queued; the thread must then call
/// `apply_deferred` whenever it runs out of work (the lanes do, lanes.rs).
pub fn defer_cache_effects_on_this_thread() {
    DEFERS_HERE.with(|defers| defers.set(true));
}

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
    /// Keys written or deleted.
    fn len(&self) -> usize {
        self.rows.len() + self.deleted.len()
    }

    /// True for a commit that writes no data key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

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

/// What the cache knows of the keys that hash to one slot (read and written together).
#[derive(Default)]
struct Slot {
    /// The (odd) epoch of the last commit that wrote a key of this slot. Only ever grows.
    writing: AtomicU64,
    /// Keys of this slot in cache effects that are queued and not applied yet.
    unapplied: AtomicU64,
}

type Shard = RwLock<Cache<Slice, Row, RowWeighter>>;

pub struct RowCache {
    /// Rows by shard (`shard_in` of the key's hash); None when the cache is off.
    rows: Option<Box<[Shard]>>,
    /// Odd while a commit is in progress; +2 per commit.
    epoch: AtomicU64,
    slots: Box<[Slot]>,
    /// Cache effects of visible commits, in commit order, not applied yet.
    deferred: Mutex<VecDeque<(RowWrites, CommitEnd)>>,
    /// Keys in `deferred`.
    deferred_keys: AtomicUsize,
    /// Held while applying effects, so they apply one at a time in queue order.
    applying: Mutex<()>,
}

fn hash_of(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

fn slot_of(key: &[u8]) -> usize {
    slot_in(hash_of(key))
}

fn slot_in(hash: u64) -> usize {
    hash as usize & (WRITING_SLOTS - 1)
}

/// Slots take the hash's low bits, shards its high ones.
fn shard_in(hash: u64) -> usize {
    (hash >> 58) as usize & (ROW_SHARDS - 1)
}

fn read(shard: &Shard) -> RwLockReadGuard<'_, Cache<Slice, Row, RowWeighter>> {
    shard.read().unwrap_or_else(|p| p.into_inner())
}

fn write(shard: &Shard) -> RwLockWriteGuard<'_, Cache<Slice, Row, RowWeighter>> {
    shard.write().unwrap_or_else(|p| p.into_inner())
}

fn shard_for<'a>(shards: &'a [Shard], key: &[u8]) -> &'a Shard {
    &shards[shard_in(hash_of(key))]
}

impl RowCache {
    pub fn new(capacity_bytes: u64) -> RowCache {
        const _: () = assert!(ROW_SHARDS.is_power_of_two() && ROW_SHARDS <= 64);
        let rows = (capacity_bytes > 0).then(|| {
            let shard_bytes = capacity_bytes.div_ceil(ROW_SHARDS as u64);
            // The item estimate only sizes the hash tables; the weight bound is what holds.
            let items = (shard_bytes / (ROW_OVERHEAD_BYTES + 128)).max(16) as usize;
            (0..ROW_SHARDS).map(|_| RwLock::new(Cache::with_weighter(items, shard_bytes, RowWeighter))).collect()
        });
        let slots = (0..WRITING_SLOTS).map(|_| Slot::default()).collect();
        RowCache {
            rows,
            epoch: AtomicU64::new(0),
            slots,
            deferred: Mutex::new(VecDeque::new()),
            deferred_keys: AtomicUsize::new(0),
            applying: Mutex::new(()),
        }
    }

    /// `read` of the stored row of `key`, if cached and current (see the header); `read` runs
    /// under the row's shard read lock and must take no lock.
    pub fn lookup_with<T>(&self, key: &[u8], read_row: impl FnOnce(&[u8]) -> T) -> Option<T> {
        let rows = self.rows.as_ref()?;
        let before = self.epoch.load(Ordering::SeqCst);
        let hash = hash_of(key);
        let slot = &self.slots[slot_in(hash)];
        // Every effect of the commits visible by now is in the cache (read before the cache).
        if slot.unapplied.load(Ordering::SeqCst) != 0 {
            return None;
        }
        let shard = read(&rows[shard_in(hash)]);
        let row = shard.get(key)?;
        // Not a key of the commit running at `before` or of any later one (stamps only grow).
        (slot.writing.load(Ordering::SeqCst) < before | 1).then(|| read_row(row))
    }

    /// `read` of the stored rows of all `keys` from one consistent state, or None if any is not
    /// cached or a commit overlapped the lookups. `read` runs under the shards' read locks and
    /// must take no lock.
    pub fn lookup_all_with<T>(&self, keys: &[Vec<u8>], read_rows: impl FnOnce(&[&[u8]]) -> T) -> Option<T> {
        let rows = self.rows.as_ref()?;
        let before = self.epoch.load(Ordering::SeqCst);
        if before & 1 == 1 {
            return None;
        }
        let hashes: Vec<u64> = keys.iter().map(|key| hash_of(key)).collect();
        if hashes.iter().any(|&hash| self.slots[slot_in(hash)].unapplied.load(Ordering::SeqCst) != 0) {
            return None;
        }
        // Each shard's read lock once, in index order (see the header).
        let needed = hashes.iter().fold(0u64, |mask, &hash| mask | 1 << shard_in(hash));
        let guards: Vec<_> = (0..ROW_SHARDS).map(|index| (needed & 1 << index != 0).then(|| read(&rows[index]))).collect();
        let mut found = Vec::with_capacity(keys.len());
        for (key, &hash) in keys.iter().zip(&hashes) {
            let shard = guards[shard_in(hash)].as_ref().expect("invariant: a key's shard is locked");
            found.push(&**shard.get(key.as_slice())?);
        }
        (self.epoch.load(Ordering::SeqCst) == before).then(|| read_rows(&found))
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
            write(shard_for(rows, &key)).insert(key, row);
        }
    }

    /// Caller holds the commit lock; the commit must not be visible yet.
    pub fn begin_commit(&self, writes: &RowWrites) {
        let before = self.epoch.fetch_add(1, Ordering::SeqCst);
        assert!(before & 1 == 0, "invariant: row cache commits overlap");
        if self.rows.is_some() {
            for key in writes.keys() {
                let slot = &self.slots[slot_of(key)];
                slot.writing.store(before + 1, Ordering::SeqCst);
                slot.unapplied.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Caller holds the commit lock; `end` says how the commit ended. The cache effect is
    /// queued; a lane leaves it there (up to DEFERRED_KEYS_MAX keys), other threads apply the
    /// queue before returning.
    pub fn end_commit(&self, writes: RowWrites, end: CommitEnd) {
        if self.rows.is_some() {
            if end == CommitEnd::Refused {
                writes.keys().for_each(|key| self.count_applied(key));
            } else {
                let keys = writes.len();
                if keys > 0 {
                    // Counted with the push, under the queue's lock, and uncounted only once
                    // applied: the count never falls below the keys queued.
                    let mut queue = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
                    queue.push_back((writes, end));
                    self.deferred_keys.fetch_add(keys, Ordering::SeqCst);
                }
            }
        }
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if self.deferred_keys.load(Ordering::SeqCst) > DEFERRED_KEYS_MAX || !DEFERS_HERE.with(Cell::get) {
            self.apply_deferred();
        }
    }

    /// Whether cache effects are queued (or being applied).
    pub fn has_deferred(&self) -> bool {
        self.queued_keys() > 0
    }

    /// Applies every queued cache effect, in commit order. Returns at once if another thread
    /// is applying them (it takes the ones queued meanwhile too). After a panic here (a broken
    /// invariant) `applying` stays poisoned and nothing more is applied: queued effects are
    /// dropped instead (the queue stays bounded), and their keys' slots keep counting them as
    /// unapplied for good, so lookups there miss and read storage, never a stale row.
    pub fn apply_deferred(&self) {
        let Some(rows) = &self.rows else { return };
        while self.deferred_keys.load(Ordering::SeqCst) > 0 {
            let _applying = match self.applying.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::WouldBlock) => return,
                Err(TryLockError::Poisoned(_)) => return self.drop_deferred(),
            };
            loop {
                let next = self.deferred.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                let Some((writes, end)) = next else { break };
                let keys = writes.len();
                // Each key's count drops after its own effect is in the cache.
                for key in &writes.deleted {
                    let hash = hash_of(key);
                    write(&rows[shard_in(hash)]).remove(&**key);
                    self.count_applied_in(slot_in(hash));
                }
                for (key, row) in writes.rows {
                    let hash = hash_of(&key);
                    let mut shard = write(&rows[shard_in(hash)]);
                    let replaced = match end {
                        CommitEnd::Applied => {
                            shard.insert(key, row);
                            None
                        }
                        _ => shard.remove(&*key),
                    };
                    drop(shard);
                    drop(replaced);
                    self.count_applied_in(slot_in(hash));
                }
                self.deferred_keys.fetch_sub(keys, Ordering::SeqCst);
            }
            // Released before the loop's check: an effect queued by a thread that found this
            // one applying is taken on the next pass.
        }
    }

    /// Empties the queue without applying it (the cache is broken, see `apply_deferred`); the
    /// slots' unapplied counts are left raised.
    fn drop_deferred(&self) {
        let mut queue = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
        let keys: usize = queue.drain(..).map(|(writes, _)| writes.len()).sum();
        self.deferred_keys.fetch_sub(keys, Ordering::SeqCst);
    }

    fn count_applied(&self, key: &[u8]) {
        self.count_applied_in(slot_of(key));
    }

    fn count_applied_in(&self, slot: usize) {
        let before = self.slots[slot].unapplied.fetch_sub(1, Ordering::SeqCst);
        assert!(before > 0, "invariant: a slot's unapplied count went below zero");
    }

    pub fn stats(&self) -> (u64, u64) {
        self.rows.as_ref().map_or((0, 0), |rows| {
            rows.iter().map(|shard| {
                let shard = read(shard);
                (shard.len() as u64, shard.weight())
            })
            .fold((0, 0), |(len, weight), (l, w)| (len + l, weight + w))
        })
    }

    /// Keys in queued cache effects (their slots miss until applied).
    pub fn queued_keys(&self) -> u64 {
        self.deferred_keys.load(Ordering::SeqCst) as u64
    }
}

/// For a run of writes applied in order, which item is the last write of its key (true): the
/// one that wins. Short runs (the common case) find repeated keys by a scan instead of hashing.
pub fn last_writes<T>(items: &[T], key: impl Fn(&T) -> &[u8]) -> Vec<bool> {
    let mut last = vec![false; items.len()];
    let mut seen = (items.len() > RUN_SCAN_ITEMS_MAX).then(|| std::collections::HashSet::with_capacity(items.len()));
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
mod tests;
