//! The calls that run on the caller's thread (the daemon's JS thread) instead of the libuv pool
//! or a lane, each only when it can finish without waiting: plain reads answered from the row
//! cache, memory-only transaction steps, and small plain writes whose commit can start at once.
//! Each returns None, having done nothing, when it cannot; the caller then makes the call the
//! usual way. Outputs are those `execute` would give.

use super::*;

/// Answers `ops` from the row cache alone, or returns None (having done nothing) if any op is
/// not a plain read (get / exists / getBatch outside a transaction), fails validation, or needs
/// a row that is not cached. No storage work: safe on the daemon's JS thread. Each op sees one
/// consistent state (rowcache.rs), as it would on the storage path. Like `execute_bounded`, it
/// answers only a prefix of `ops` (at least one) once its outputs hold `output_bytes_max` bytes.
pub fn read_cached(store: &Store, ops: &[Op], output_bytes_max: usize) -> Option<Vec<OpOutput>> {
    let now = value::now_ms();
    let mut outputs = Vec::with_capacity(ops.len());
    let mut bytes = 0;
    for op in ops {
        if op.txn.is_some() || !matches!(op.kind, kind::GET | kind::EXISTS | kind::GET_BATCH) {
            return None;
        }
        if bytes >= output_bytes_max {
            break;
        }
        let keys = read_keys(store, op).ok()?;
        let output = cached_output(store, op.kind, keys, now)?;
        bytes += output_bytes(&output);
        outputs.push(output);
    }
    Some(outputs)
}

/// Runs `ops` on the calling thread if every one is a plain write (put, delete, putBatch or
/// deleteBatch outside a transaction) and their commit can start at once: the commit lock is
/// free and nothing in fjall that a write could wait for is running or due
/// (`Store::writes_may_wait`). Outputs as `execute` gives them. Otherwise returns None, having
/// done nothing. The daemon calls it on its JS thread for a connection with nothing else
/// running, so a single write costs no lane hand-off (two cross-CPU wake-ups). What it can
/// still meet is a fjall worker that starts between the check and the write (a window of a few
/// microseconds) and the OS scheduling other threads.
pub fn write_now(store: &Store, ops: Vec<Op>) -> Option<Vec<OpOutput>> {
    if ops.is_empty() || !ops.iter().all(is_plain_write) {
        return None;
    }
    // The lock first: while a commit of ours runs (perhaps rotating a memtable), fjall's state
    // is not read at all.
    let guard = store.try_lock_commits()?;
    // Queued row-cache effects of lane commits would be applied here, before this commit's
    // own (rowcache.rs): the lane that left them applies them once it runs out of calls.
    if store.writes_may_wait() || store.rows.has_deferred() {
        return None;
    }
    let mut outputs = Vec::with_capacity(ops.len());
    let mut run = WriteRun::default();
    for op in ops {
        run.add_op(store, op, &mut outputs);
    }
    run.commit(store, Some(guard), &mut outputs);
    Some(outputs)
}

/// A transaction step that touches memory only: begin (a registry entry), abort (drops the
/// transaction), and a write inside a transaction (buffered in it until commit; a first
/// operation also takes the transaction's snapshot, see `run_in_memory`).
fn is_memory_step(op: &Op) -> bool {
    match op.kind {
        kind::BEGIN | kind::ABORT => true,
        kind::PUT | kind::DELETE | kind::PUT_BATCH | kind::DELETE_BATCH => op.txn.is_some(),
        _ => false,
    }
}

/// Runs `ops` on the calling thread if every one is a memory-only transaction step, with the
/// outputs `execute` would give; or returns None if one is another kind, or a write is its
/// transaction's first operation (which takes the snapshot, under the commit lock) while a
/// commit holds that lock. None means nothing was done, except perhaps another transaction of
/// the call taking its snapshot a moment before its write runs on the pool, which no client can
/// tell from taking it then. No storage work and no waiting on a commit, so the
/// daemon may call it on its JS thread: a transaction's begin and writes then cost no pool round
/// trip. (A step waits only for its own transaction's lock, which nothing holds across storage
/// work while the connection that owns the transaction runs this call.)
pub fn run_in_memory(store: &Store, ops: Vec<Op>) -> Option<Vec<OpOutput>> {
    if ops.is_empty() || !ops.iter().all(is_memory_step) {
        return None;
    }
    // A write into a transaction begun by this same call would take its snapshot, under the
    // commit lock, after the begin ran: such a call goes to the pool (rare: a client pipelines
    // a begin with a read more often than with a blind write).
    let begun: Vec<u64> = ops.iter().filter(|op| op.kind == kind::BEGIN).filter_map(|op| op.txn).collect();
    if !begun.is_empty() && ops.iter().any(|op| op.kind != kind::BEGIN && op.kind != kind::ABORT && op.txn.is_some_and(|t| begun.contains(&t))) {
        return None;
    }
    // A call's writes usually share one transaction: look each one up once.
    let mut txns: Vec<u64> = ops.iter().filter(|op| op.kind != kind::ABORT && op.kind != kind::BEGIN).filter_map(|op| op.txn).collect();
    txns.sort_unstable();
    txns.dedup();
    let unstarted: Vec<u64> = txns.into_iter().filter(|&id| txn::unstarted(store, id)).collect();
    if !unstarted.is_empty() {
        let commits = store.try_lock_commits()?;
        for id in unstarted {
            // A failure to start is left to the pool, which reports it as execute does.
            if !matches!(txn::try_start(store, id, &commits), Some(Ok(()))) {
                return None;
            }
        }
    }
    let outputs = ops.into_iter().map(|op| run_op(store, op).unwrap_or_else(failed)).collect();
    Some(outputs)
}
