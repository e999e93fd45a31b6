//! Vigil: a host for sandboxed WebAssembly detection and response plugins.
//!
//! Where things live:
//! - [`audit`]: the hash-chained audit log, its reader and verifier;
//! - [`engine`]: the wasmtime engine (pooling, epochs) and compile cache;
//! - [`capability`]: one module per host interface a plugin may import;
//! - [`sandbox`]: per-call store data and the per-plugin linker;
//! - [`manifest`] (`pack.toml`) and [`policy`] (`vigil.toml`): what a pack
//!   requests and what the operator grants;
//! - [`pack`]: loading a pack into a [`pack::Generation`];
//! - [`plugin`]: one call into a plugin, limits and quarantine;
//! - [`preinit`]: `init` run once per load and snapshotted (wasmtime-wizer);
//! - [`watchdog`]: proof that no call outlives its deadline;
//! - [`plugin_text`]: what a plugin says, made safe to show;
//! - [`pipeline`]: events in (sources), batches through every pack's
//!   detectors and enrichers, findings out (sinks); [`output`]: the
//!   finding records;
//! - [`revocation`]: `vigil revoke`/`restore`, their live effect and audit trail;
//! - [`inspect`], [`pack_test`]: the `vigil inspect` and `vigil test` commands;
//! - [`replay`]: `vigil replay`, re-running recorded invocations;
//! - [`runtime`]: the operator-scoped objects (engine, policy, state stores);
//! - [`host`]: the library host every running command goes through;
//! - [`artifacts`]: components built from this workspace, the starter pack.

pub mod artifacts;
pub mod atomic_file;
pub mod audit;
pub mod bindings;
pub mod capability;
pub mod engine;
pub mod host;
pub mod inspect;
pub mod manifest;
pub mod output;
pub mod pack;
pub mod pack_test;
pub mod pipeline;
pub mod plugin;
pub mod plugin_text;
pub mod policy;
pub mod preinit;
pub mod replay;
pub mod revocation;
pub mod runtime;
pub mod sandbox;
pub mod state_recovery;
pub mod state_store;
pub mod state_stores;
pub mod watchdog;
