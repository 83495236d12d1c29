//! The WebAssembly runtime: wasi:http proxy components on wasmtime.
//!
//! `prepare` loads a version's precompiled artifact from the on-disk cache
//! (compiling it once if absent) and links it into an `InstancePre`.
//! `invoke` gives every request a fresh `Store` and instance from the
//! pooling allocator, bounded by the function's memory cap (store limits)
//! and timeout (epoch interruption). With `instance_reuse = N` (opt-in,
//! weaker isolation) an instance that ended cleanly serves up to N
//! requests, one at a time, before it is dropped.

mod engine;
mod guest;
mod logs;
mod outbound;
mod settle;

pub use engine::{WasmRuntime, WasmStats};
