//! toondb-engine: fjall 3 behind a thin napi-rs layer. `core` holds all logic (tested with
//! `cargo test`); `binding` is the napi surface, left out of test builds, which have no Node
//! host to resolve napi symbols against.

pub mod core;

#[cfg(not(test))]
mod binding;
