//! Running: one call of one plugin on one batch.
//!
//! - [`sandbox`]: the per-call store data (memory cap, deny-all WASI, each
//!   granted capability's context) and the per-plugin linker;
//! - [`plugin`]: the loaded plugin and its one generic call path per world
//!   (fresh instance, deadline, output checks, quarantine);
//! - [`tape`]: every host call recorded live or answered on replay;
//! - [`output`]: the finding records a call's output becomes;
//! - [`watchdog`]: proof that no call outlives its deadline;
//! - [`plugin_text`]: what a plugin says, made safe to show.

pub mod output;
pub mod plugin;
pub mod plugin_text;
pub mod sandbox;
pub mod tape;
pub mod watchdog;
