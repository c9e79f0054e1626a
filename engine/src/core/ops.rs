//! `execute`: the batch of operations one call runs, and the result of each.
//!
//! Responsibility: validate each op against the limits, route it to a plain read, a
//! non-transactional write, a transaction or a cursor, and turn its outcome into an `OpOutput`.
//! The calls that may run on the caller's thread instead (row-cache reads, memory-only
//! transaction steps, small writes) are in `here.rs`; the cursor ops (scan, scanNext,
//! listPath) in `scans.rs`.
//!
//! Invariants: ops run sequentially in array order and each gets exactly one output; a failing
//! op sets `error` and never affects the others; a write's `seq` is its ticket, a read's `seq`
//! is the issued-ticket counter loaded after the read (covers every commit the read could see),
//! a failed op's `seq` is 0 (it showed and applied nothing, so it waits for no fsync).

use super::error::{EngineError, EngineResult};
use super::rowcache::Row;
use super::store::{Store, WriteItem, ITEM_OVERHEAD_BYTES};
use super::txn::{self, Isolation, KeyWrites};
use super::value;
use super::view::View;
use super::wire::PackedArray;
use fjall::Slice;
use std::sync::MutexGuard;

pub mod kind {
    pub const GET: u32 = 1;
    pub const EXISTS: u32 = 2;
    pub const PUT: u32 = 3;
    pub const DELETE: u32 = 4;
    pub const GET_BATCH: u32 = 5;
    pub const PUT_BATCH: u32 = 6;
    pub const DELETE_BATCH: u32 = 7;
    pub const SCAN_OPEN: u32 = 8;
    pub const SCAN_NEXT: u32 = 9;
    pub const SCAN_CLOSE: u32 = 10;
    pub const LIST_PATH: u32 = 11;
    pub const BEGIN: u32 = 12;
    pub const COMMIT: u32 = 13;
    pub const ABORT: u32 = 14;
}

/// One operation with owned inputs (mirrors `EngineOp` of engine/types.ts).
#[derive(Default, Clone, Debug)]
pub struct Op {
    pub kind: u32,
    pub txn: Option<u64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub keys: Option<Vec<Vec<u8>>>,
    pub values: Option<Vec<Vec<u8>>>,
    /// scanOpen: the range's end; listPath: where a previous call's listing goes on.
    pub end: Option<Vec<u8>>,
    pub range: bool,
    pub ttl_ms: Option<f64>,
    pub cursor: Option<u64>,
    pub reverse: bool,
    /// scanOpen: each entry also carries its expiry (wire.rs `push_entry`).
    pub expiry: bool,
    pub limit: Option<f64>,
    pub batch_items: Option<f64>,
    pub batch_bytes: Option<f64>,
    pub isolation: Option<u32>,
    /// commit: how many write requests (write ops) of the transaction it covers, when the
    /// caller sent them without waiting for their results (txn.rs `commit`).
    pub writes: Option<f64>,
}

/// Result of one op (mirrors `EngineResult`). `value: Some(None)` is a missing key (JS null).
#[derive(Default, Debug)]
pub struct OpOutput {
    pub error: Option<EngineError>,
    /// get: the value; listPath: where the listing goes on (absent when it is complete).
    pub value: Option<Option<Vec<u8>>>,
    pub found: Option<bool>,
    /// getBatch: the values in key order, in wire form (wire.rs): a bin each, nil where missing.
    pub values: Option<PackedArray>,
    /// listPath: the child segments.
    pub keys: Option<Vec<Vec<u8>>>,
    /// scanOpen / scanNext: the batch's entries in wire form (wire.rs).
    pub entries: Option<PackedArray>,
    /// scanOpen / scanNext: the batch's entries that carry a TTL, if any (cursors::Expiring).
    pub expiring: Option<Vec<crate::core::cursors::Expiring>>,
    pub done: Option<bool>,
    pub cursor: Option<u64>,
    pub txn: Option<u64>,
    pub commit_ts: Option<u64>,
    pub seq: u64,
}

/// Runs `ops` in order; never fails as a whole.
///
/// Group commit inside a call: a run of consecutive non-transactional writes is validated op by
/// op and applied as ONE fjall commit (one journal write, one ticket). Each op stays atomic (the
/// merged commit is all-or-nothing, which is stronger), later ops override earlier ones on the
/// same key (fjall keeps the last write of a key within a transaction), and any read after the
/// run sees all of it, because a read ends the run.
pub fn execute(store: &Store, ops: Vec<Op>) -> Vec<OpOutput> {
    execute_bounded(store, ops, usize::MAX)
}

/// Runs `ops` like `execute`, but ends the call early, after at least one op, once its outputs
/// hold `output_bytes_max` bytes: the outputs are then those of a prefix of `ops`, every op of
/// which was applied, and none after it; the caller runs the rest in a later call. Only reads
/// have outputs that count (values, names, entries), so a call ends only right after a read,
/// where no run of writes is pending. A connection's replies stay bounded that way however many
/// reads of large values it pipelines, alone or between writes (the daemon lets one call's
/// replies leave before it runs the rest).
pub fn execute_bounded(store: &Store, ops: Vec<Op>, output_bytes_max: usize) -> Vec<OpOutput> {
    let mut outputs: Vec<OpOutput> = Vec::with_capacity(ops.len());
    let mut run = WriteRun::default();
    let mut bytes = 0;
    for op in ops {
        if bytes >= output_bytes_max {
            break;
        }
        if is_plain_write(&op) {
            run.add_op(store, op, &mut outputs);
            continue;
        }
        run.commit(store, None, &mut outputs);
        let output = run_op(store, op).unwrap_or_else(failed);
        bytes += output_bytes(&output);
        outputs.push(output);
    }
    run.commit(store, None, &mut outputs);
    outputs
}

/// The bytes of data an output carries (values, names, entries), for `execute_bounded`.
fn output_bytes(output: &OpOutput) -> usize {
    let value = output.value.as_ref().and_then(Option::as_ref).map_or(0, Vec::len);
    let values = output.values.as_ref().map_or(0, |v| v.bytes.len());
    let keys = output.keys.as_ref().map_or(0, |keys| keys.iter().map(|k| k.len() + ITEM_OVERHEAD_BYTES).sum());
    let entries = output.entries.as_ref().map_or(0, |e| e.bytes.len());
    value + values + keys + entries
}

/// A failed op showed nothing and applied nothing, so its reply waits for no fsync (seq 0).
fn failed(error: EngineError) -> OpOutput {
    OpOutput { error: Some(error), seq: 0, ..Default::default() }
}

fn is_plain_write(op: &Op) -> bool {
    op.txn.is_none() && matches!(op.kind, kind::PUT | kind::DELETE | kind::PUT_BATCH | kind::DELETE_BATCH)
}

/// Consecutive non-transactional writes waiting to be committed together.
#[derive(Default)]
struct WriteRun {
    items: Vec<WriteItem>,
    members: Vec<usize>,
}

impl WriteRun {
    /// Validates plain write `op` into the run and gives it the next output (its failure, if
    /// it is refused).
    fn add_op(&mut self, store: &Store, op: Op, outputs: &mut Vec<OpOutput>) {
        let index = outputs.len();
        outputs.push(OpOutput::default());
        match plain_write_items(store, op) {
            Ok(items) => {
                self.items.extend(items);
                self.members.push(index);
            }
            Err(error) => outputs[index] = failed(error),
        }
    }

    /// Commits the run (if any; under `held`, the commit lock, if the caller took it) and fills
    /// in the outputs of its members.
    fn commit(&mut self, store: &Store, held: Option<MutexGuard<'_, ()>>, outputs: &mut [OpOutput]) {
        if self.members.is_empty() {
            return;
        }
        let committed = store.write_batch(held, std::mem::take(&mut self.items));
        for index in self.members.drain(..) {
            outputs[index] = match &committed.result {
                Ok(_) => OpOutput { seq: committed.ticket, ..Default::default() },
                Err(error) => failed(error.clone()),
            };
        }
    }
}

/// The validated stored-form writes of one non-transactional write op.
fn plain_write_items(store: &Store, op: Op) -> EngineResult<Vec<WriteItem>> {
    let (pairs, expiry) = write_items(store, op)?;
    Ok(pairs
        .into_iter()
        .map(|(key, value)| match value {
            Some(value) => WriteItem::Put { key: Slice::from(key), stored: value::encode_slice(&value, expiry), expiry_ms: expiry },
            None => WriteItem::Delete { key: Slice::from(key) },
        })
        .collect())
}

fn run_op(store: &Store, op: Op) -> EngineResult<OpOutput> {
    match op.kind {
        kind::GET | kind::EXISTS | kind::GET_BATCH => read_op(store, op),
        kind::PUT | kind::DELETE | kind::PUT_BATCH | kind::DELETE_BATCH => write_op(store, op),
        kind::SCAN_OPEN => scan_open(store, op),
        kind::SCAN_NEXT => scan_next(store, op),
        kind::SCAN_CLOSE => {
            store.cursors.take(need_handle(op.cursor, "cursor")?)?;
            Ok(OpOutput { seq: store.tickets.issued(), ..Default::default() })
        }
        kind::LIST_PATH => list_path(store, op),
        kind::BEGIN => begin(store, op),
        kind::COMMIT => commit(store, op),
        kind::ABORT => {
            txn::abort(store, need_handle(op.txn, "txn")?)?;
            Ok(OpOutput { seq: store.tickets.issued(), ..Default::default() })
        }
        other => Err(EngineError::invalid(format!("unknown op kind {other}"))),
    }
}

fn need_handle(handle: Option<u64>, what: &str) -> EngineResult<u64> {
    handle.ok_or_else(|| EngineError::invalid(format!("{what} is required")))
}

fn need<T>(field: Option<T>, what: &str) -> EngineResult<T> {
    field.ok_or_else(|| EngineError::invalid(format!("{what} is required")))
}

/// A non-negative integer count from a JS number; `None` stays `None`.
fn count(value: Option<f64>, what: &str) -> EngineResult<Option<u64>> {
    match value {
        None => Ok(None),
        Some(v) if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= 9_007_199_254_740_991.0 => Ok(Some(v as u64)),
        Some(v) => Err(EngineError::invalid(format!("{what} must be a non-negative integer, got {v}"))),
    }
}

fn read_op(store: &Store, op: Op) -> EngineResult<OpOutput> {
    let now = value::now_ms();
    let keys = read_keys(store, &op)?;
    match op.txn {
        Some(id) => txn::read(store, id, keys, |state| {
            let stored = read_rows(store, op.kind, &state.view(store)?, keys, now)?;
            read_output(store, op.kind, &stored, now)
        }),
        None => {
            // The row cache first, as `read_cached` answers between calls: a plain read in a
            // call that also writes (e.g. after a write of the same connection, which wrote
            // its rows through) then costs a lookup, not a storage read.
            if let Some(cached) = cached_output(store, op.kind, keys, now) {
                return Ok(cached);
            }
            // Sampled before the snapshot: rows read at it may refill the row cache unless a
            // commit overlapped (rowcache.rs).
            let ticket = store.rows.fill_ticket();
            let stored = read_rows(store, op.kind, &View::Snap(&store.db.read_tx()), keys, now)?;
            let output = read_output(store, op.kind, &stored, now)?;
            let found = keys.iter().zip(stored).filter_map(|(key, row)| Some((Slice::from(key.as_slice()), Row::from(row?))));
            store.fill_rows(ticket, found);
            Ok(output)
        }
    }
}

/// The stored rows of `keys` read through `view`. A getBatch stops with BATCH_TOO_LARGE as soon
/// as the live values read so far could not fit its reply: reads copy their rows, and ten
/// thousand keys naming one 16 MiB value must not first cost 160 GB.
fn read_rows(store: &Store, kind: u32, view: &View<'_>, keys: &[Vec<u8>], now: u64) -> EngineResult<Vec<Option<Vec<u8>>>> {
    let mut reply_bytes = 0usize;
    let mut rows = Vec::with_capacity(keys.len());
    for key in keys {
        let row = view.get(&store.data, key)?;
        if kind == kind::GET_BATCH {
            reply_bytes += reply_item_bytes(row.as_deref(), now)?;
            store.check_reply_bytes("getBatch", reply_bytes)?;
        }
        rows.push(row);
    }
    Ok(rows)
}

/// What one getBatch item adds to its reply: the live value with its header, or a nil.
fn reply_item_bytes(row: Option<&[u8]>, now: u64) -> EngineResult<usize> {
    Ok(match row {
        Some(row) => value::live(row, now)?.map_or(1, |v| v.len() + ITEM_OVERHEAD_BYTES),
        None => 1,
    })
}

/// The keys of a get / exists / getBatch (borrowed, both paths run per request), validated
/// against the limits.
fn read_keys<'a>(store: &Store, op: &'a Op) -> EngineResult<&'a [Vec<u8>]> {
    let keys = match op.kind {
        kind::GET_BATCH => need(op.keys.as_deref(), "keys")?,
        _ => std::slice::from_ref(need(op.key.as_ref(), "key")?),
    };
    store.check_batch(keys.len())?;
    for key in keys {
        store.check_key(key)?;
    }
    Ok(keys)
}

/// A read's output from the stored rows it found (None: no row), in stored form; expired rows
/// read as missing. Its `seq` is loaded after the read (it covers every commit it could see).
/// A getBatch's values go straight into their wire form (wire.rs).
fn read_output<R: AsRef<[u8]>>(store: &Store, kind: u32, stored: &[Option<R>], now: u64) -> EngineResult<OpOutput> {
    fn live<R: AsRef<[u8]>>(row: &Option<R>, now: u64) -> EngineResult<Option<&[u8]>> {
        match row {
            Some(row) => value::live(row.as_ref(), now),
            None => Ok(None),
        }
    }
    let mut out = OpOutput { seq: store.tickets.issued(), ..Default::default() };
    match kind {
        kind::GET => out.value = Some(live(&stored[0], now)?.map(<[u8]>::to_vec)),
        kind::EXISTS => out.found = Some(live(&stored[0], now)?.is_some()),
        _ => {
            let mut bytes = 0;
            for row in stored {
                bytes += reply_item_bytes(row.as_ref().map(AsRef::as_ref), now)?;
            }
            store.check_reply_bytes("getBatch", bytes)?;
            let mut values = PackedArray::with_capacity(bytes);
            for row in stored {
                values.push_value(live(row, now)?);
            }
            out.values = Some(values);
        }
    }
    Ok(out)
}

/// A plain read of validated `keys` answered from the row cache alone, or None if a row is not
/// cached (or a cached row is damaged: the storage path then reports it).
/// The output is built from rows the cache lends under its shard locks (no copies of rows).
fn cached_output(store: &Store, kind: u32, keys: &[Vec<u8>], now: u64) -> Option<OpOutput> {
    match keys {
        [key] => store.rows.lookup_with(key, |row| read_output(store, kind, &[Some(row)], now).ok())?,
        _ => store.rows.lookup_all_with(keys, |rows| {
            let rows: Vec<Option<&[u8]>> = rows.iter().copied().map(Some).collect();
            read_output(store, kind, &rows, now).ok()
        })?,
    }
}

fn expiry_for(ttl_ms: Option<f64>) -> EngineResult<Option<u64>> {
    match ttl_ms {
        None => Ok(None),
        Some(t) if t.is_finite() && t >= 1.0 => Ok(Some(value::now_ms().saturating_add(t as u64))),
        Some(t) => Err(EngineError::invalid(format!("ttlMs must be a positive number, got {t}"))),
    }
}

/// Validated (key, user value or None for delete) pairs of a write op, and its expiry.
fn write_items(store: &Store, op: Op) -> EngineResult<(KeyWrites, Option<u64>)> {
    let expiry = expiry_for(op.ttl_ms)?;
    let pairs: KeyWrites = match op.kind {
        kind::PUT => vec![(need(op.key, "key")?, Some(need(op.value, "value")?))],
        kind::DELETE => vec![(need(op.key, "key")?, None)],
        kind::DELETE_BATCH => need(op.keys, "keys")?.into_iter().map(|k| (k, None)).collect(),
        _ => {
            let (keys, values) = (need(op.keys, "keys")?, need(op.values, "values")?);
            if keys.len() != values.len() {
                return Err(EngineError::invalid(format!("{} keys but {} values", keys.len(), values.len())));
            }
            keys.into_iter().zip(values).map(|(k, v)| (k, Some(v))).collect()
        }
    };
    store.check_batch(pairs.len())?;
    for (key, val) in &pairs {
        store.check_key(key)?;
        if let Some(v) = val {
            store.check_value(v)?;
        }
    }
    Ok((pairs, expiry))
}

/// A write inside a transaction (plain writes are grouped by `execute`).
fn write_op(store: &Store, op: Op) -> EngineResult<OpOutput> {
    let id = need_handle(op.txn, "txn")?;
    let (pairs, expiry) = write_items(store, op)?;
    let items = pairs.into_iter().map(|(key, value)| (key, value.map(|value| value::encode(&value, expiry)))).collect();
    txn::write(store, id, items)?;
    Ok(OpOutput { seq: store.tickets.issued(), ..Default::default() })
}

fn isolation_of(op: &Op) -> EngineResult<Isolation> {
    match op.isolation.unwrap_or(0) {
        0 => Ok(Isolation::Serializable),
        1 => Ok(Isolation::Snapshot),
        other => Err(EngineError::invalid(format!("unknown isolation {other}"))),
    }
}

fn begin(store: &Store, op: Op) -> EngineResult<OpOutput> {
    let id = txn::begin(store, isolation_of(&op)?, op.txn)?;
    Ok(OpOutput { txn: Some(id), seq: store.tickets.issued(), ..Default::default() })
}

fn commit(store: &Store, op: Op) -> EngineResult<OpOutput> {
    let id = need_handle(op.txn, "txn")?;
    let writes = match op.writes {
        None => None,
        Some(n) if n.is_finite() && n >= 0.0 && n.fract() == 0.0 => Some(n as u64),
        Some(n) => return Err(EngineError::invalid(format!("writes must be a non-negative integer, got {n}"))),
    };
    let (ticket, result) = txn::commit(store, id, writes);
    let commit_ts = result?;
    Ok(OpOutput { commit_ts: Some(commit_ts), seq: ticket, ..Default::default() })
}

mod here;
pub use here::{read_cached, run_in_memory, write_now};
mod scans;
use scans::{list_path, scan_next, scan_open};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod bounds_tests;
#[cfg(test)]
mod txn_tests;
#[cfg(test)]
mod scan_tests;
#[cfg(test)]
mod cache_stress_tests;
