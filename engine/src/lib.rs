//! toondb-engine: fjall 3 behind a thin napi-rs layer. `core` holds all logic (tested with
//! `cargo test`); `binding` is the napi surface, left out of test builds and of builds without
//! the `addon` feature (the bench's fjall_ceiling example), which have no Node host to resolve
//! napi symbols against.

pub mod core;

#[cfg(all(not(test), feature = "addon"))]
mod binding;

/// The engine allocates small buffers per key and value (journal items, memtable entries, row
/// cache rows, result encodings); glibc malloc showed up at ~15 % of a write-heavy daemon's
/// CPU (malloc, _int_malloc, malloc_consolidate). mimalloc serves the Rust side; Node and V8 keep
/// their own allocator (nothing allocated here is freed there: results cross as copies).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
