//! The napi-rs surface of the engine: the only code that knows about JavaScript values.
//!
//! Responsibility: copy JS inputs into owned Rust values on the JS thread, run every disk-touching
//! call off it (an `AsyncTask` on the libuv pool, or a call queued on an ordered lane; the
//! group-commit thread fsyncs on its own), and turn outputs back into JS values. The lanes and
//! the group-commit thread reach JS through weak threadsafe functions, at most one notice
//! pending each.
//!
//! Invariants:
//! - No JS value crosses into `compute`: buffers are copied into `Vec<u8>` before the task starts.
//! - Whole-call failures reject with an `Error` whose message is `[CODE] text`, CODE being a
//!   registry code (protocol/errors.ts); engine/index.ts turns that into a `ToonDBError`.
//! - A batch of ops crosses as ONE buffer each way (layout in core/abi.rs): no JS object per op,
//!   no napi Buffer per key or value.

use crate::core::engine::{Checkpoint, Engine, Stats};
use crate::core::ttl::Swept;
use crate::core::error::{EngineError, ALL_CODES};
use crate::core::abi;
use crate::core::ops::{Op, OpOutput};
use crate::core::os;
use crate::core::store::{Limits, OpenOptions, Recovery};
use crate::core::syncer::Notice;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi_derive::napi;
use std::sync::Arc;

fn to_js_error(err: EngineError) -> Error {
    Error::new(Status::GenericFailure, format!("[{}] {}", err.code(), err))
}

#[napi(object)]
pub struct OpenOptionsJs {
    pub path: String,
    pub cache_bytes: Option<f64>,
    /// Row cache capacity in bytes (core/rowcache.rs); absent for the default, 0 disables it.
    pub row_cache_bytes: Option<f64>,
    /// Table-file descriptors fjall keeps open in its descriptor cache; absent for fjall's
    /// default (900 on Linux, 150 on macOS).
    pub table_files_max: Option<u32>,
    pub key_bytes_max: u32,
    pub value_bytes_max: u32,
    pub txn_bytes_max: f64,
    /// Bytes all open transactions may hold together (txnBytesDaemonMax).
    pub txn_bytes_daemon_max: f64,
    pub batch_items_max: u32,
    pub batch_bytes_max: u32,
}

#[napi(object)]
pub struct RecoveryJs {
    pub duration_ms: f64,
    pub journal_count: f64,
    pub seqno: BigInt,
    pub approximate_keys: f64,
}

impl From<Recovery> for RecoveryJs {
    fn from(r: Recovery) -> Self {
        RecoveryJs {
            duration_ms: r.duration_ms,
            journal_count: r.journal_count as f64,
            seqno: BigInt::from(r.seqno),
            approximate_keys: r.approximate_keys as f64,
        }
    }
}

#[napi(object)]
pub struct StatsJs {
    pub approximate_keys: f64,
    pub disk_bytes: f64,
    pub journal_bytes: f64,
    pub journal_count: f64,
    pub write_buffer_bytes: f64,
    pub seqno: BigInt,
    pub open_transactions: f64,
    pub transaction_bytes: f64,
    pub open_cursors: f64,
    pub row_cache_rows: f64,
    pub row_cache_bytes: f64,
    pub row_cache_queued_keys: f64,
    pub journal_syncs: f64,
    pub last_journal_sync_ms: Option<f64>,
    pub watermark_failures: f64,
}

impl From<Stats> for StatsJs {
    fn from(s: Stats) -> Self {
        StatsJs {
            approximate_keys: s.approximate_keys as f64,
            disk_bytes: s.disk_bytes as f64,
            journal_bytes: s.journal_bytes as f64,
            journal_count: s.journal_count as f64,
            write_buffer_bytes: s.write_buffer_bytes as f64,
            seqno: BigInt::from(s.seqno),
            open_transactions: s.open_transactions as f64,
            transaction_bytes: s.transaction_bytes as f64,
            open_cursors: s.open_cursors as f64,
            row_cache_rows: s.row_cache_rows as f64,
            row_cache_bytes: s.row_cache_bytes as f64,
            row_cache_queued_keys: s.row_cache_queued_keys as f64,
            journal_syncs: s.journal_syncs as f64,
            last_journal_sync_ms: s.last_journal_sync_ms.map(|ms| ms as f64),
            watermark_failures: s.watermark_failures as f64,
        }
    }
}

#[napi(object)]
pub struct SweptJs {
    pub removed: f64,
    pub examined: f64,
}

#[napi(object)]
pub struct CheckpointJs {
    pub lsn: BigInt,
    pub duration_ms: f64,
}

impl From<Checkpoint> for CheckpointJs {
    fn from(c: Checkpoint) -> Self {
        CheckpointJs { lsn: BigInt::from(c.lsn), duration_ms: c.duration_ms }
    }
}

/// Runs a call on the JS thread, synchronously: decodes `ops` and encodes what `run` answered;
/// null if `run` declined the call or the ops do not decode (the call then takes the async
/// path, which reports them). A panic becomes an INTERNAL error instead of unwinding into Node.
/// An output budget from JS: a positive number of bytes, anything else none at all.
fn bytes_budget(bytes: f64) -> usize {
    if bytes.is_finite() && bytes >= 1.0 { bytes as usize } else { usize::MAX }
}

fn run_here(ops: &[u8], run: impl FnOnce(Vec<Op>) -> Option<Vec<OpOutput>>) -> Result<Option<CopiedBuffer>> {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let ops = abi::decode_ops(ops).ok()?;
        run(ops).map(abi::encode_results)
    }));
    match outcome {
        Ok(encoded) => Ok(encoded.map(CopiedBuffer)),
        Err(payload) => Err(to_js_error(panicked(panic_message(payload.as_ref())))),
    }
}

/// Bytes that become a JS Buffer by one copy into memory V8 owns (`napi_create_buffer_copy`).
/// `Buffer::from(Vec)` avoids the copy with an external buffer, but each of those is a weak
/// handle with a finalizer whose Vec is freed only after a GC: measured on 64 cached gets,
/// 90 µs per call with external buffers against 19 µs with the copy.
pub struct CopiedBuffer(Vec<u8>);

impl ToNapiValue for CopiedBuffer {
    unsafe fn to_napi_value(env: napi::sys::napi_env, val: Self) -> Result<napi::sys::napi_value> {
        let mut out = std::ptr::null_mut();
        check_status!(
            unsafe { napi::sys::napi_create_buffer_copy(env, val.0.len(), val.0.as_ptr().cast(), std::ptr::null_mut(), &mut out) },
            "could not create a result Buffer"
        )?;
        crate::core::spare::give_back(val.0);
        Ok(out)
    }
}

impl TypeName for CopiedBuffer {
    fn type_name() -> &'static str {
        "Buffer"
    }

    fn value_type() -> ValueType {
        ValueType::Object
    }
}

/// A whole-call job on the libuv pool: `run` computes, `finish` converts on the JS thread.
pub struct Job<T: Send + 'static, J> {
    run: Option<Box<dyn FnOnce() -> std::result::Result<T, EngineError> + Send>>,
    finish: fn(T) -> J,
    on_panic: fn(String) -> EngineError,
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic".to_string()
    }
}

fn panicked(message: String) -> EngineError {
    EngineError::Internal(format!("the storage engine panicked: {message}"))
}

fn panicked_opening(message: String) -> EngineError {
    EngineError::Corruption(format!("the storage engine panicked while opening the data files: {message}"))
}

impl<T: Send + 'static, J: ToNapiValue + TypeName> Task for Job<T, J> {
    type Output = T;
    type JsValue = J;

    fn compute(&mut self) -> Result<T> {
        let run = self.run.take().ok_or_else(|| Error::new(Status::GenericFailure, "[INTERNAL] job ran twice"))?;
        // A panic must not cross the FFI boundary (it would abort the daemon with no code): it
        // becomes a coded error. lsm-tree panics on some damaged metadata, so a panic while
        // opening is reported as CORRUPTION.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
            Ok(result) => result.map_err(to_js_error),
            Err(payload) => Err(to_js_error((self.on_panic)(panic_message(payload.as_ref())))),
        }
    }

    fn resolve(&mut self, _env: Env, output: T) -> Result<J> {
        Ok((self.finish)(output))
    }
}

// `Job` holds only Send closures and a fn pointer.
unsafe impl<T: Send + 'static, J> Send for Job<T, J> {}

fn job<T: Send + 'static, J>(
    run: impl FnOnce() -> std::result::Result<T, EngineError> + Send + 'static,
    finish: fn(T) -> J,
) -> Job<T, J> {
    Job { run: Some(Box::new(run)), finish, on_panic: panicked }
}

/// An open engine. Methods returning promises run on the libuv pool.
#[napi]
pub struct NativeEngine {
    inner: Arc<Engine>,
    recovery: Recovery,
}

#[napi]
impl NativeEngine {
    #[napi(getter)]
    pub fn recovery(&self) -> RecoveryJs {
        self.recovery.into()
    }

    /// Runs a batch of ops encoded by engine/abi.ts; resolves to the encoded results (core/abi.rs).
    /// The input is copied on the JS thread; decoding, execution and encoding run on the pool.
    #[napi(ts_return_type = "Promise<Buffer>")]
    pub fn execute(&self, ops: Buffer) -> AsyncTask<Job<Vec<u8>, CopiedBuffer>> {
        let input = ops.to_vec();
        let engine = self.inner.clone();
        AsyncTask::new(job(
            move || {
                let ops = abi::decode_ops(&input)?;
                Ok(abi::encode_results(engine.execute(ops)?))
            },
            CopiedBuffer,
        ))
    }

    /// Runs a batch like `execute`, but may end it early once its results hold
    /// `output_bytes_max` bytes: the results are then those of a prefix of the ops (at least
    /// one), and the caller runs the rest in a later call (core/ops.rs `execute_bounded`).
    #[napi(ts_return_type = "Promise<Buffer>")]
    pub fn execute_bounded(&self, ops: Buffer, output_bytes_max: f64) -> AsyncTask<Job<Vec<u8>, CopiedBuffer>> {
        let input = ops.to_vec();
        let engine = self.inner.clone();
        let budget = bytes_budget(output_bytes_max);
        AsyncTask::new(job(
            move || {
                let ops = abi::decode_ops(&input)?;
                Ok(abi::encode_results(engine.execute_bounded(ops, budget)?))
            },
            CopiedBuffer,
        ))
    }

    /// Answers a batch of plain reads from the row cache alone, synchronously, or returns null
    /// having done nothing (core/ops.rs `read_cached`). Memory only, never storage. Encodings as
    /// for `execute`.
    #[napi(ts_return_type = "Buffer | null")]
    pub fn read_cached(&self, ops: Buffer, output_bytes_max: f64) -> Result<Option<CopiedBuffer>> {
        run_here(&ops, |ops| self.inner.read_cached(&ops, bytes_budget(output_bytes_max)))
    }

    /// Commits a batch of plain writes (put, delete, putBatch, deleteBatch outside transactions)
    /// synchronously when the commit can start at once, or returns null having done nothing
    /// (core/ops.rs `write_now`). Encodings as for `execute`.
    #[napi(ts_return_type = "Buffer | null")]
    pub fn write_now(&self, ops: Buffer) -> Result<Option<CopiedBuffer>> {
        run_here(&ops, |ops| self.inner.write_now(ops))
    }

    /// Runs a batch of memory-only transaction steps (begin, abort, writes inside a transaction)
    /// synchronously, or returns null having done nothing (core/ops.rs `run_in_memory`). Never
    /// storage, never a wait on a commit. Encodings as for `execute`.
    #[napi(ts_return_type = "Buffer | null")]
    pub fn run_in_memory(&self, ops: Buffer) -> Result<Option<CopiedBuffer>> {
        run_here(&ops, |ops| self.inner.run_in_memory(ops))
    }

    #[napi(ts_return_type = "Promise<number>")]
    pub fn sync(&self) -> AsyncTask<Job<u64, f64>> {
        let engine = self.inner.clone();
        AsyncTask::new(job(move || engine.sync(), |seq| seq as f64))
    }

    /// Starts the group-commit thread (core/syncer.rs). `onSynced` runs on the JS thread after
    /// a completed fsync with null (read `durableSeq()`; several fsyncs may share one call), or
    /// once with `[CODE] message` when a fsync failed, after which the thread has ended.
    #[napi(ts_args_type = "onSynced: (error: string | null) => void")]
    pub fn start_syncer(&self, on_synced: Function<Option<String>, ()>) -> Result<()> {
        let notify = on_synced
            .build_threadsafe_function::<Notice>()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(|ctx| {
                ctx.value.take();
                Ok(ctx.value.error.map(|e| format!("[{}] {}", e.code(), e)))
            })?;
        self.inner
            .start_syncer(Box::new(move |notice| {
                // Fails only while the JS environment is shutting down, when nobody waits.
                let _ = notify.call(notice, ThreadsafeFunctionCallMode::NonBlocking);
            }))
            .map_err(to_js_error)
    }

    /// Starts `count` ordered lanes (core/lanes.rs). `onDone` runs on the JS thread when lane
    /// calls have finished; `takeDone()` then returns their outcomes. With `syncResults` each
    /// call asks the group-commit thread for a fsync covering its results. A call ends early
    /// once its results hold `outputBytesMax` bytes, as `executeBounded`.
    #[napi(ts_args_type = "count: number, syncResults: boolean, outputBytesMax: number, onDone: (unused: number) => void")]
    pub fn start_lanes(&self, count: u32, sync_results: bool, output_bytes_max: f64, on_done: Function<u32, ()>) -> Result<()> {
        let notify = on_done
            .build_threadsafe_function::<u32>()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(|ctx| Ok(ctx.value))?;
        self.inner
            .start_lanes(
                count as usize,
                sync_results,
                bytes_budget(output_bytes_max),
                Arc::new(move || {
                    // Fails only while the JS environment is shutting down, when nobody waits.
                    let _ = notify.call(0, ThreadsafeFunctionCallMode::NonBlocking);
                }),
            )
            .map_err(to_js_error)
    }

    /// Queues a call encoded by engine/abi.ts on lane `lane` (copied here, on the JS thread);
    /// `resume` runs the rest of a call that ended early (core/engine.rs `start_lanes`). Without
    /// `wake`, a sleeping lane starts it at the next `wakeLanes()`, which the caller must make.
    #[napi]
    pub fn submit(&self, lane: u32, call: u32, ops: Buffer, resume: bool, wake: bool) -> Result<()> {
        self.inner.submit(lane as usize, call, ops.to_vec(), resume, wake).map_err(to_js_error)
    }

    /// Wakes the sleeping lanes that have calls queued by `submit` without `wake`.
    #[napi]
    pub fn wake_lanes(&self) {
        self.inner.wake_lanes();
    }

    /// The outcomes of lane calls finished since the last take (layout `done` in core/abi.rs).
    #[napi(ts_return_type = "Buffer")]
    pub fn take_done(&self) -> CopiedBuffer {
        CopiedBuffer(abi::encode_done(self.inner.take_done()))
    }

    /// Asks the group-commit thread for a fsync covering `ticket` (returns at once).
    #[napi]
    pub fn request_sync(&self, ticket: f64) {
        self.inner.request_sync(ticket as u64);
    }

    #[napi]
    pub fn durable_seq(&self) -> f64 {
        self.inner.durable_seq() as f64
    }

    #[napi]
    pub fn written_seq(&self) -> f64 {
        self.inner.written_seq() as f64
    }

    #[napi(ts_return_type = "Promise<CheckpointJs>")]
    pub fn checkpoint(&self) -> AsyncTask<Job<Checkpoint, CheckpointJs>> {
        let engine = self.inner.clone();
        AsyncTask::new(job(move || engine.checkpoint(), CheckpointJs::from))
    }

    #[napi(ts_return_type = "Promise<SweptJs>")]
    pub fn sweep_expired(&self, limit: u32) -> AsyncTask<Job<Swept, SweptJs>> {
        let engine = self.inner.clone();
        AsyncTask::new(job(move || engine.sweep_expired(limit as usize), |s| SweptJs { removed: s.removed as f64, examined: s.examined as f64 }))
    }

    #[napi(ts_return_type = "Promise<StatsJs>")]
    pub fn stats(&self) -> AsyncTask<Job<Stats, StatsJs>> {
        let engine = self.inner.clone();
        AsyncTask::new(job(move || engine.stats(), StatsJs::from))
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self) -> AsyncTask<Job<(), ()>> {
        let engine = self.inner.clone();
        AsyncTask::new(job(move || engine.close(), |()| ()))
    }
}

#[napi(ts_return_type = "Promise<NativeEngine>")]
pub fn open_engine(options: OpenOptionsJs) -> AsyncTask<Job<(Engine, Recovery), NativeEngine>> {
    let open = OpenOptions {
        path: options.path,
        cache_bytes: options.cache_bytes.filter(|b| b.is_finite() && *b > 0.0).map(|b| b as u64),
        row_cache_bytes: options.row_cache_bytes.filter(|b| b.is_finite() && *b >= 0.0).map(|b| b as u64),
        table_files_max: options.table_files_max.filter(|n| *n > 0).map(|n| n as usize),
        limits: Limits {
            key_bytes_max: options.key_bytes_max as usize,
            value_bytes_max: options.value_bytes_max as usize,
            txn_bytes_max: if options.txn_bytes_max.is_finite() && options.txn_bytes_max > 0.0 {
                options.txn_bytes_max as u64
            } else {
                0
            },
            txn_bytes_daemon_max: if options.txn_bytes_daemon_max.is_finite() && options.txn_bytes_daemon_max > 0.0 {
                options.txn_bytes_daemon_max as u64
            } else {
                0
            },
            batch_items_max: options.batch_items_max as usize,
            batch_bytes_max: options.batch_bytes_max as usize,
        },
    };
    let mut opening = job(move || Engine::open(&open), |(engine, recovery)| NativeEngine { inner: Arc::new(engine), recovery });
    opening.on_panic = panicked_opening;
    AsyncTask::new(opening)
}

/// An exclusive lock on a data directory, held until `release()` or process exit.
#[napi]
pub struct DataDirLock {
    lock: os::DirLock,
}

#[napi]
impl DataDirLock {
    #[napi(getter)]
    pub fn path(&self) -> String {
        self.lock.path().display().to_string()
    }

    #[napi]
    pub fn release(&mut self) {
        self.lock.release();
    }
}

#[napi]
pub fn lock_data_dir(dir: String) -> Result<DataDirLock> {
    os::DirLock::acquire(std::path::Path::new(&dir)).map(|lock| DataDirLock { lock }).map_err(to_js_error)
}

#[napi(object)]
pub struct PeerCredentialsJs {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
    /// Supplementary groups (os::PeerCredentials::groups).
    pub groups: Vec<u32>,
}

#[napi]
pub fn peer_credentials(fd: i32) -> Result<PeerCredentialsJs> {
    os::peer_credentials(fd).map(|c| PeerCredentialsJs { uid: c.uid, gid: c.gid, pid: c.pid, groups: c.groups }).map_err(to_js_error)
}

/// The soft open-files limit (os::open_files_limit), as a JS number: Number.MAX_SAFE_INTEGER
/// when unlimited or larger.
#[napi]
pub fn open_files_limit() -> Result<f64> {
    os::open_files_limit().map(|n| n.min((1u64 << 53) - 1) as f64).map_err(to_js_error)
}

#[napi]
pub fn sd_notify(state: String) -> Result<bool> {
    os::sd_notify(&state).map_err(to_js_error)
}

#[napi]
pub fn native_error_codes() -> Vec<String> {
    ALL_CODES.iter().map(|c| c.to_string()).collect()
}
