//! The storage core: no napi types here, so everything is testable with `cargo test`.
//!
//! Layout: `engine` (open/close and whole-call operations; `lanes` run ordered calls on threads
//! of their own) -> `ops` (one execute batch) ->
//! `store` (fjall database, commit path, limits; `store/waits` keeps JS-thread commits off
//! fjall's locks, `store/reaper` frees what rotations leave behind off them, `store/workers`
//! sizes fjall's background workers and lowers their priority) with `txn`,
//! `cursors`, `view`, `ttl`,
//! `value` (stored value header), `pathkey`, `tickets` (durability counters), `journal` and
//! `syncer` (group commit: the fsync and its thread), `rowcache` (rows served from memory; lanes
//! apply its updates when idle),
//! `abi` and `wire` (the encodings calls cross napi in; `spare` keeps their large buffers),
//! `preflight` (checks of fjall's files before it opens them) and `watermark` (refuses a
//! recovery that lost acknowledged commits), `error`, `fjall_log` (what fjall says when its
//! worker fails), `os` (data-dir lock, peer credentials,
//! sd_notify), and `alloc` (mimalloc's settings, made before the store opens).

pub mod abi;
pub mod alloc;
pub mod cursors;
pub mod engine;
pub mod error;
pub mod fjall_log;
pub mod journal;
pub mod lanes;
pub mod ops;
pub mod os;
pub mod pathkey;
pub mod preflight;
pub mod rowcache;
pub mod spare;
pub mod store;
pub mod syncer;
pub mod tickets;
pub mod ttl;
pub mod txn;
pub mod value;
pub mod view;
pub mod watermark;
pub mod wire;
