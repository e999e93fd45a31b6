//! Vigil: a host for sandboxed WebAssembly detection and response plugins.
//!
//! Where things live, one folder per stage of a plugin's life:
//! - [`load`]: reading a pack (`pack.toml`, [`load::manifest`]) under the
//!   operator's policy (`vigil.toml`, [`load::policy`]) into a
//!   [`load::pack::Generation`]: the engine and compile cache, import
//!   checks, pre-linking, `init` run once and snapshotted ([`load::preinit`]);
//! - [`capability`]: one module per host interface a plugin may import, each
//!   a self-contained unit, and the registry that lists them;
//! - [`run`]: one call into a plugin: the per-call sandbox
//!   ([`run::sandbox`]), the generic call path per world ([`run::plugin`]),
//!   quarantine, the deadline watchdog;
//! - [`finding`]: what a detector's output becomes: the finding record the
//!   sinks write and the audit log holds;
//! - [`state`]: plugins' persistent key-value stores, one per plugin
//!   identity, and bringing them forward from the audit log;
//! - [`pipeline`]: events in (sources), batches through every pack's
//!   detectors and enrichers, findings out (sinks);
//! - [`audit`]: the hash-chained audit log, its reader and verifier: the
//!   sink of everything the stages above produce;
//! - [`host`]: the library host every running command goes through;
//! - [`control`]: the control plane of a long-running host: packs
//!   reloaded by generations when their directory changes, status;
//! - [`serve`]: `vigil serve`, the host as a service: HTTP ingest, admin
//!   API, Prometheus metrics, signals;
//! - [`revocation`]: `vigil revoke`/`restore`, their live effect and audit trail;
//! - [`replay`]: `vigil replay`, re-running recorded invocations;
//! - [`pack_test`]: the `vigil test` command;
//! - [`plugin_text`]: what a plugin says, escaped and clamped for terminals
//!   and logs;
//! - [`artifacts`]: components built from this workspace, the starter pack.

pub mod artifacts;
pub mod atomic_file;
pub mod audit;
pub mod bindings;
pub mod capability;
pub mod control;
pub mod finding;
pub mod host;
pub mod load;
pub mod pack_test;
pub mod pipeline;
pub mod plugin_text;
pub mod replay;
pub mod revocation;
pub mod run;
pub mod serve;
pub mod state;
