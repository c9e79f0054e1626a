//! The cursor ops of `execute`: `scan` (opens a cursor and reads its first batch), `scanNext`
//! and `listPath`.
//!
//! Invariants: a scan whose first batch is its last leaves no cursor behind; a cursor whose
//! read failed or finished ends with that read (the registry never keeps a done cursor); a
//! cursor opened in a transaction is noted there, so the transaction's end closes it.

use super::{count, need_handle, Op, OpOutput};
use crate::core::cursors::{self, Cursor, ListSource, Source, BATCH_BYTES_DEFAULT, BATCH_ITEMS_DEFAULT, BATCH_ITEMS_MAX};
use crate::core::error::{EngineError, EngineResult};
use crate::core::store::Store;
use crate::core::txn;

pub(super) fn scan_open(store: &Store, mut op: Op) -> EngineResult<OpOutput> {
    for bound in [&op.key, &op.end].into_iter().flatten() {
        store.check_bound(bound)?;
    }
    let source = match op.txn {
        Some(id) => {
            txn::with_txn(store, id, |_| Ok(()))?;
            Source::Txn(id)
        }
        None => Source::Snap(store.db.read_tx()),
    };
    let limit = count(op.limit, "limit")?.filter(|&l| l > 0);
    let mut cursor = Cursor {
        source,
        bounds: cursors::scan_bounds(op.key.take(), op.end.take(), op.range),
        reverse: op.reverse,
        with_expiry: op.expiry,
        remaining: limit,
        batch_items: BATCH_ITEMS_DEFAULT,
        batch_bytes: BATCH_BYTES_DEFAULT,
    };
    apply_batch_sizes(&mut cursor, &op)?;
    let txn = match cursor.source {
        Source::Txn(id) => Some(id),
        Source::Snap(_) => None,
    };
    let batch = cursors::read_batch(store, &mut cursor)?;
    let handle = if batch.done { None } else { Some(store.cursors.insert(cursor)) };
    if let (Some(id), Some(handle)) = (txn, handle) {
        txn::note_cursor(store, id, handle)?;
    }
    Ok(batch_output(store, batch, handle))
}

/// Applies the op's batch sizes to the cursor: on a scanOpen or a scanNext, they bound that
/// read and every later one that gives none (the daemon grows a cursor's batches this way).
fn apply_batch_sizes(cursor: &mut Cursor, op: &Op) -> EngineResult<()> {
    if let Some(n) = count(op.batch_items, "batchItems")? {
        cursor.batch_items = (n as usize).clamp(1, BATCH_ITEMS_MAX);
    }
    if let Some(n) = count(op.batch_bytes, "batchBytes")? {
        cursor.batch_bytes = (n as usize).max(1);
    }
    Ok(())
}

pub(super) fn scan_next(store: &Store, op: Op) -> EngineResult<OpOutput> {
    let id = need_handle(op.cursor, "cursor")?;
    let mut cursor = store.cursors.check_out(id)?;
    let read = apply_batch_sizes(&mut cursor, &op).and_then(|()| cursors::read_batch(store, &mut cursor));
    match &read {
        // Not put back if its transaction ended during the read: the cursor ends with it, and
        // the transaction's end already answers its next scanNext (CURSOR_NOT_FOUND).
        Ok(batch) if !batch.done => {
            cursor.put_back();
        }
        // Done, or failed: the cursor ends with this read.
        _ => drop(cursor),
    }
    let batch = match read {
        Ok(batch) => batch,
        // The cursor's transaction finished: the cursor is gone with it.
        Err(EngineError::NotInTransaction(_)) => return Err(EngineError::CursorNotFound(id)),
        Err(e) => return Err(e),
    };
    Ok(batch_output(store, batch, Some(id)))
}

fn batch_output(store: &Store, batch: cursors::Batch, handle: Option<u64>) -> OpOutput {
    OpOutput {
        entries: Some(batch.entries),
        expiring: (!batch.expiring.is_empty()).then_some(batch.expiring),
        done: Some(batch.done),
        cursor: handle,
        seq: store.tickets.issued(),
        ..Default::default()
    }
}

pub(super) fn list_path(store: &Store, op: Op) -> EngineResult<OpOutput> {
    let parent = op.key.unwrap_or_default();
    store.check_bound(&parent)?;
    let limit = count(op.limit, "limit")?.unwrap_or(0) as usize;
    // `end` carries where a previous call's listing goes on (its `next`).
    let start = op.end;
    let listing = match op.txn {
        Some(id) => txn::reading(store, id, |state| cursors::list_path(store, ListSource::Txn(state), &parent, start, limit))?,
        None => cursors::list_path(store, ListSource::Snap(&store.db.read_tx()), &parent, start, limit)?,
    };
    // The listing's `next`, if it goes on, as the output's value.
    Ok(OpOutput { keys: Some(listing.children), value: listing.next.map(Some), seq: store.tickets.issued(), ..Default::default() })
}
