//! Scan cursors and `listPath`.
//!
//! Responsibility: batched, snapshot-consistent range reads. A cursor stores no iterator (fjall
//! iterators borrow nothing but would pin memtables for as long as a client idles): it stores
//! its read source, its remaining bounds and what is left of its limit, and every batch re-seeks
//! the range after the last key returned.
//! - Outside a transaction the source is a fjall `Snapshot` taken at scanOpen, so every batch
//!   reads the same point in time, whatever commits in between.
//! - Inside a transaction the source is the transaction (see view.rs): own writes are visible
//!   and, when serializable, each range read is marked for phantom detection.
//!
//! One batch read steps through at most SCAN_BATCH_STEPS_MAX entries, live or expired, so a
//! long run of expired keys the TTL sweep has not deleted yet costs several short batches
//! instead of one engine call of any length; the cursor resumes after the last key stepped
//! through, returned or not.
//!
//! Invariants: handles increase from 1 and are never reused; a cursor that reports `done` is
//! already freed; a batch that stops short of its entry and byte budgets (even empty) is not
//! the last only when it reached SCAN_BATCH_STEPS_MAX; expired entries are never returned; the
//! limit (`remaining`) counts returned entries only.

use super::error::{EngineError, EngineResult};
use super::pathkey;
use super::store::{Store, ITEM_OVERHEAD_BYTES};
use super::txn::{self, TxnState};
use super::value;
use super::view::{prefix_bounds, Bounds, View};
use super::wire::PackedArray;
use fjall::{Slice, Snapshot};
use std::collections::HashMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Entries per batch of a cursor opened with no batch size. (The daemon always gives one, and
/// grows it batch by batch for a client's scan without one: daemon/handlers/scan.ts.)
pub const BATCH_ITEMS_DEFAULT: usize = 256;
pub const BATCH_ITEMS_MAX: usize = 10_000;
/// Used when the caller gives no byte budget: keeps one batch well inside a frame.
pub const BATCH_BYTES_DEFAULT: usize = 4 * 1024 * 1024;
/// Entries, live or expired, one batch read steps through at most (it reads one more to know
/// that the scan goes on). Without it a batch stepped over every expired, unswept key of a run
/// in one engine call, holding a pool thread and the connection's lane however small its
/// batch. Above BATCH_ITEMS_MAX, so a range without expired keys still fills every batch;
/// 16384 expired entries took 2.4 ms to step through in a memtable, 3.1 ms in tables with
/// their blocks cached (release build, in review).
pub const SCAN_BATCH_STEPS_MAX: usize = 16_384;

pub enum Source {
    Snap(Snapshot),
    Txn(u64),
}

pub struct Cursor {
    pub source: Source,
    pub bounds: Bounds,
    pub reverse: bool,
    /// Entries are `[key, value, expiry]` triples (expiry: ms since the epoch, or nil).
    pub with_expiry: bool,
    /// Entries still allowed by the scan's total limit (None = unlimited).
    pub remaining: Option<u64>,
    /// Most entries the next batch holds (a read may change it for itself and later ones).
    pub batch_items: usize,
    pub batch_bytes: usize,
}

/// One batch of a scan: its entries already in wire form (wire.rs).
pub struct Batch {
    pub entries: PackedArray,
    /// The entries that carry a TTL, in order (see `Expiring`).
    pub expiring: Vec<Expiring>,
    pub done: bool,
}

/// An entry of a batch that carries a TTL: where it lies in the batch's entry bytes, and when it
/// expires (ms since the epoch). A batch answered later than it was read (the daemon reads
/// snapshot scans ahead) leaves out the entries that have expired by then, so an expired key
/// reads as absent however long the batch waited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiring {
    pub start: u32,
    pub end: u32,
    pub at_ms: u64,
}

/// The open cursors: idle ones by handle, and the handles a read has taken out.
#[derive(Default)]
struct OpenCursors {
    idle: HashMap<u64, Cursor>,
    /// Cursors taken out by a read (`check_out`) that has neither put them back nor ended them
    /// yet: still open, so still counted (stats showed one fewer per scanNext or read-ahead in
    /// progress). The flag is set when the cursor was closed during its read (its transaction
    /// ended): `put_back` then ends it instead of leaving it idle for ever.
    reading: HashMap<u64, bool>,
}

/// A cursor taken out of the registry by a read (`CursorRegistry::check_out`).
pub struct CheckedOut<'a> {
    registry: &'a CursorRegistry,
    id: u64,
    /// Some until put back.
    cursor: Option<Cursor>,
}

impl CheckedOut<'_> {
    /// Returns the cursor to the registry, idle under its handle, unless it was closed while it
    /// was read (or the registry was cleared: the engine closed meanwhile): then it ends here.
    /// True if it was put back.
    pub fn put_back(mut self) -> bool {
        let cursor = self.cursor.take().expect("invariant: a checked-out cursor is put back once");
        let mut open = self.registry.lock();
        let closed = open.reading.remove(&self.id).unwrap_or(true);
        if !closed {
            open.idle.insert(self.id, cursor);
        }
        !closed
    }
}

impl std::ops::Deref for CheckedOut<'_> {
    type Target = Cursor;
    fn deref(&self) -> &Cursor {
        self.cursor.as_ref().expect("invariant: a checked-out cursor is used before it is put back")
    }
}

impl std::ops::DerefMut for CheckedOut<'_> {
    fn deref_mut(&mut self) -> &mut Cursor {
        self.cursor.as_mut().expect("invariant: a checked-out cursor is used before it is put back")
    }
}

impl Drop for CheckedOut<'_> {
    /// Not put back: the cursor ends with this read.
    fn drop(&mut self) {
        if self.cursor.is_some() {
            self.registry.lock().reading.remove(&self.id);
        }
    }
}

#[derive(Default)]
pub struct CursorRegistry {
    next: AtomicU64,
    open: Mutex<OpenCursors>,
}

impl CursorRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, OpenCursors> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, cursor: Cursor) -> u64 {
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        self.lock().idle.insert(id, cursor);
        id
    }

    /// Removes cursor `id` for good (scanClose), or fails if it is not open and idle.
    pub fn take(&self, id: u64) -> EngineResult<Cursor> {
        self.lock().idle.remove(&id).ok_or(EngineError::CursorNotFound(id))
    }

    /// Takes the cursor out while a batch is read. It counts as open until the read either
    /// returns it (`CheckedOut::put_back`) or drops it, which ends it: done, failed, or a
    /// panic caught further up (the count cannot drift).
    pub fn check_out(&self, id: u64) -> EngineResult<CheckedOut<'_>> {
        let mut open = self.lock();
        let cursor = open.idle.remove(&id).ok_or(EngineError::CursorNotFound(id))?;
        open.reading.insert(id, false);
        Ok(CheckedOut { registry: self, id, cursor: Some(cursor) })
    }

    /// Open cursors, idle or being read (one closed during its read counts until the read ends).
    pub fn count(&self) -> usize {
        let open = self.lock();
        open.idle.len() + open.reading.len()
    }

    /// Closes cursor `id` if it is open: at once if idle, and if a read has it out, when that
    /// read ends (`CheckedOut::put_back` ends it instead of putting it back).
    pub fn close(&self, id: u64) {
        let mut open = self.lock();
        if open.idle.remove(&id).is_none() {
            if let Some(closed) = open.reading.get_mut(&id) {
                *closed = true;
            }
        }
    }

    /// True for a cursor that is idle, or being read and not closed meanwhile.
    pub fn is_open(&self, id: u64) -> bool {
        let open = self.lock();
        open.idle.contains_key(&id) || open.reading.get(&id) == Some(&false)
    }

    pub fn clear(&self) {
        let mut open = self.lock();
        open.idle.clear();
        open.reading.clear();
    }
}

/// Bounds of a scan: a prefix, or `[start, end)` with either side open.
pub fn scan_bounds(key: Option<Vec<u8>>, end: Option<Vec<u8>>, range: bool) -> Bounds {
    if range {
        let lo = key.map_or(Bound::Unbounded, Bound::Included);
        let hi = end.map_or(Bound::Unbounded, Bound::Excluded);
        (lo, hi)
    } else {
        prefix_bounds(&key.unwrap_or_default())
    }
}

/// Reads the next batch of `cursor` and advances it past the last entry the batch stepped
/// through (returned, or skipped as expired).
pub fn read_batch(store: &Store, cursor: &mut Cursor) -> EngineResult<Batch> {
    let plan = BatchPlan {
        bounds: cursor.bounds.clone(),
        reverse: cursor.reverse,
        with_expiry: cursor.with_expiry,
        max_items: cursor.remaining.map_or(cursor.batch_items, |r| (r as usize).min(cursor.batch_items)),
        max_bytes: cursor.batch_bytes,
        now: value::now_ms(),
    };
    let (entries, expiring, resume_after, more) = match &cursor.source {
        Source::Snap(snap) => collect(&View::Snap(snap), store, plan)?,
        Source::Txn(id) => txn::reading(store, *id, |state| collect(&state.range_view(store, &plan.bounds)?, store, plan))?,
    };
    if let Some(last) = resume_after {
        if cursor.reverse {
            cursor.bounds.1 = Bound::Excluded(last.to_vec());
        } else {
            cursor.bounds.0 = Bound::Excluded(last.to_vec());
        }
    }
    if let Some(r) = cursor.remaining.as_mut() {
        *r -= u64::from(entries.count);
    }
    let done = !more || cursor.remaining == Some(0);
    Ok(Batch { entries, expiring, done })
}

/// Room reserved for a batch's encoded entries up front: enough for a full batch of small
/// entries (no regrowth on the common path, the daemon's largest default batch included), never
/// more than the byte budget allows; within spare.rs SPARE_BYTES_MAX, so the buffer is reused.
const BATCH_RESERVE_BYTES_MAX: usize = 2 * 1024 * 1024;
const ENTRY_RESERVE_BYTES: usize = 160;

/// What one batch reads: where, in which direction, in which entry form, and how much.
struct BatchPlan {
    bounds: Bounds,
    reverse: bool,
    with_expiry: bool,
    max_items: usize,
    max_bytes: usize,
    /// Entries that expire at or before this instant (ms since the epoch) are skipped.
    now: u64,
}

/// Encodes up to `plan.max_items` live entries (stopping once `plan.max_bytes` is reached,
/// after at least one), stepping through at most SCAN_BATCH_STEPS_MAX entries, live or
/// expired; returns them, those of them that carry a TTL, the last key stepped through (the
/// next batch starts after it), and whether another entry, live or not yet known to be, follows.
fn collect(view: &View<'_>, store: &Store, plan: BatchPlan) -> EngineResult<(PackedArray, Vec<Expiring>, Option<Slice>, bool)> {
    let reserve = (plan.max_items.saturating_mul(ENTRY_RESERVE_BYTES)).min(plan.max_bytes).min(BATCH_RESERVE_BYTES_MAX);
    let mut out = PackedArray::with_capacity(reserve);
    let mut expiring = Vec::new();
    let mut resume_after = None;
    let mut bytes = 0usize;
    for (steps, entry) in view.range(&store.data, plan.bounds, plan.reverse).enumerate() {
        let (key, stored) = entry?;
        if steps == SCAN_BATCH_STEPS_MAX {
            return Ok((out, expiring, resume_after, true));
        }
        let (expiry, live) = value::decode(&stored)?;
        if value::expired(expiry, plan.now) {
            resume_after = Some(key);
            continue;
        }
        if out.count as usize >= plan.max_items || (bytes >= plan.max_bytes && out.count > 0) {
            return Ok((out, expiring, resume_after, true));
        }
        bytes += key.len() + live.len();
        let start = out.bytes.len();
        if plan.with_expiry {
            out.push_entry_with_expiry(&key, live, expiry);
        } else {
            out.push_pair(&key, live);
        }
        if let Some(at_ms) = expiry {
            // Offsets fit: a batch is bounded far below 4 GiB (scanBatchBytesMax + one entry).
            expiring.push(Expiring { start: start as u32, end: out.bytes.len() as u32, at_ms });
        }
        resume_after = Some(key);
    }
    Ok((out, expiring, resume_after, false))
}

/// Where `list_path` reads: a snapshot, or a transaction (each of its range reads counted, see
/// `TxnState::range_view`; run it under `txn::reading`).
pub enum ListSource<'a> {
    Snap(&'a Snapshot),
    Txn(&'a mut TxnState),
}

/// What one `list_path` call found: the child names, and where the listing goes on (the first
/// key still to examine, under the parent) when it stopped before the end of the parent's range.
pub struct Listing {
    pub children: Vec<Vec<u8>>,
    pub next: Option<Vec<u8>>,
}

/// Keys, live or expired, names or not, one `list_path` call examines at most: each child costs
/// one seek and each expired entry one step, so without a bound one call over a long run of
/// keys that are not path names (binary keys in the same key space) or of expired keys the
/// sweep has not deleted held a pool thread (and, in a transaction, the connection's lane) for
/// seconds (1.2M such keys: 7.4 s, found in review). As SCAN_BATCH_STEPS_MAX, a few ms of work.
pub const LIST_PATH_STEPS_MAX: usize = SCAN_BATCH_STEPS_MAX;

/// Distinct child segments (still escaped) directly under `parent` that are path names
/// (pathkey::is_name), in order, from `start` (a key under `parent` where a previous call's
/// `next` said the listing goes on) or from the beginning, seeking past each child's subtree
/// instead of reading it; stops after `limit` names (0: no limit), LIST_PATH_STEPS_MAX keys
/// examined or names that fill a reply (batchBytesMax), and then says where the listing goes on
/// (a single name too large for a reply is BATCH_TOO_LARGE).
pub fn list_path(store: &Store, mut source: ListSource<'_>, parent: &[u8], start: Option<Vec<u8>>, limit: usize) -> EngineResult<Listing> {
    let now = value::now_ms();
    let (low, hi) = prefix_bounds(parent);
    let mut lo = match start {
        Some(key) if key.starts_with(parent) && key.len() <= store.limits.key_bytes_max + pathkey::AFTER_CHILD_BYTES => Bound::Included(key),
        Some(_) => return Err(EngineError::invalid("a listPath's start must lie under its parent, at most a key and 2 bytes long")),
        None => low,
    };
    let mut children = Vec::new();
    let mut reply_bytes = 0;
    let mut steps = 0;
    loop {
        if (limit != 0 && children.len() >= limit) || steps >= LIST_PATH_STEPS_MAX {
            let Bound::Included(next) = lo else { unreachable!("a listing's low bound is always a key") };
            return Ok(Listing { children, next: Some(next) });
        }
        let key = match first_live(&mut source, store, (lo, hi.clone()), now, &mut steps)? {
            Walk::End => return Ok(Listing { children, next: None }),
            Walk::Stopped(next) => return Ok(Listing { children, next: Some(next) }),
            Walk::Live(key) => key,
        };
        let (child, _deeper) = pathkey::child_segment(&key[parent.len()..]);
        let child = child.to_vec();
        lo = Bound::Included(pathkey::after_child(parent, &child));
        // Not a child: a key equal to the parent prefix itself, or one whose bytes after it are
        // not a path name (a binary key in the same key space, e.g. under the empty prefix).
        if pathkey::is_name(&child) {
            reply_bytes += child.len() + ITEM_OVERHEAD_BYTES;
            if let Err(too_large) = store.check_reply_bytes("listPath", reply_bytes) {
                if children.is_empty() {
                    return Err(too_large);
                }
                // The names found fill a reply: the listing goes on at this one.
                return Ok(Listing { children, next: Some([parent, &child[..]].concat()) });
            }
            children.push(child);
        }
    }
}

/// Where `first_live` got to.
enum Walk {
    /// The first live key.
    Live(Vec<u8>),
    /// No live key is left in the range.
    End,
    /// The step bound was reached: the first key not examined yet (in the range or past it).
    Stopped(Vec<u8>),
}

/// The first live key in `bounds`, stepping over expired entries; each entry examined counts
/// in `steps`, and the walk stops once they reach LIST_PATH_STEPS_MAX (after at least one).
fn first_live(source: &mut ListSource<'_>, store: &Store, bounds: Bounds, now: u64, steps: &mut usize) -> EngineResult<Walk> {
    let view = match source {
        ListSource::Snap(snap) => View::Snap(snap),
        ListSource::Txn(state) => state.range_view(store, &bounds)?,
    };
    for entry in view.range(&store.data, bounds, false) {
        let (key, stored) = entry?;
        *steps += 1;
        if value::live(&stored, now)?.is_some() {
            return Ok(Walk::Live(key.to_vec()));
        }
        if *steps >= LIST_PATH_STEPS_MAX {
            // The smallest key after this expired one.
            let mut next = key.to_vec();
            next.push(0x00);
            return Ok(Walk::Stopped(next));
        }
    }
    Ok(Walk::End)
}
