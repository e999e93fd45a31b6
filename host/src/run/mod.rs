//! Running: one call of one plugin on one batch.
//!
//! - [`sandbox`]: the per-call store data (memory cap, deny-all WASI, each
//!   granted capability's context) and the per-plugin linker;
//! - [`init`]: how a plugin's instances start (snapshot or per instance);
//! - [`limits`]: what a call runs under, and how the log records it;
//! - [`plugin`]: the loaded plugin and its one generic call path per world
//!   (fresh instance, deadline, output checks, quarantine);
//! - [`watchdog`]: proof that no call outlives its deadline.

pub mod init;
pub mod limits;
pub mod plugin;
pub mod sandbox;
pub mod watchdog;
