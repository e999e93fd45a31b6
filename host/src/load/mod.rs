//! Loading: from a pack directory and the operator's policy to a
//! [`pack::Generation`] of pre-linked, pre-initialised plugins.
//!
//! - [`manifest`]: `pack.toml`, what a pack's plugins request;
//! - [`policy`]: `vigil.toml`, what the operator grants and the limits;
//! - [`service`]: its `[serve]` table, how `vigil serve` runs;
//! - [`engine`]: the wasmtime engine (pooling, epochs) and compile cache;
//! - [`grants`]: what a plugin was allowed, as recorded at load;
//! - [`runtime`]: the operator-scoped objects a load needs;
//! - [`pack`]: loading a pack: compile, check imports against grants,
//!   resolve grants, pre-link;
//! - [`preinit`]: `init` run once per load and snapshotted (wasmtime-wizer);
//! - [`inspect`]: `vigil inspect`, what a component imports and exports.

pub mod engine;
pub mod grants;
pub mod inspect;
pub mod manifest;
pub mod pack;
pub mod policy;
pub mod preinit;
pub mod runtime;
pub mod service;
