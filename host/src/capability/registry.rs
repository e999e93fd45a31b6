//! The capability registry and the one trait every capability implements.
//!
//! A capability is one self-contained unit: its WIT file, its module (which
//! implements [`HostCapability`]: grant type, validation, resolution at load
//! and for replay, per-call context, linker registration), one line in
//! [`for_each_capability`], and the SDK functions. Every place that needs
//! "each capability" (the [`Capability`](super::Capability) enum, the
//! operator's grant table in `policy.rs`, the per-call store in
//! `sandbox.rs`) expands that one list with a macro of its own, so adding a
//! line reaches all of them and no other file names the new capability.
//!
//! The life of a grant, and where each step happens:
//! 1. the operator writes its scope under the plugin in `vigil.toml`; it
//!    deserializes into [`HostCapability::Grant`] and is checked by
//!    [`HostCapability::validate`] when the policy is read;
//! 2. at load, the scope of every effective capability is recorded as JSON
//!    in the pack-load record (`audit::record::GrantSet::scopes`), and the
//!    grant is put in force *from that JSON* by [`HostCapability::resolve`],
//!    so what runs is exactly what the log says; replay resolves the same
//!    JSON with a [`Setup`] in replay mode;
//! 3. every call starts a fresh [`HostCapability::Ctx`] from the resolved
//!    grant ([`HostCapability::start_call`]);
//! 4. the interface is linked only when the capability is effective
//!    ([`HostCapability::add_to_linker`]).

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmtime::component::Linker;

use super::files::PackFiles;
use crate::capability::tape::Tape;
use crate::state::stores::StateStores;

/// Calls `$then!` with every capability of the host, one line each:
/// `name: Variant => module::Marker`. The name is what `pack.toml`,
/// `vigil.toml` and the audit log call it; the marker type implements
/// [`HostCapability`]. This list is the registry.
macro_rules! for_each_capability {
    ($then:ident) => {
        $then! {
            log: Log => $crate::capability::log::LogData,
            config: Config => $crate::capability::config::ConfigData,
            state: State => $crate::capability::state::StateData,
            clock: Clock => $crate::capability::clock::ClockData,
            http: Http => $crate::capability::http::HttpData,
            files: Files => $crate::capability::files::FilesData,
        }
    };
}
pub(crate) use for_each_capability;

/// What a capability module provides beside its WIT bindings: the whole
/// life of a grant (see the module doc).
pub trait HostCapability: Sized + 'static {
    /// What it lets a plugin do, for help and reports.
    const SUMMARY: &'static str;
    /// Whether `init` may call it while the host snapshots the plugin at
    /// load (`preinit.rs`): only read-only interfaces whose answers are
    /// fixed for a pack generation, so the snapshot holds nothing a fresh
    /// instance would see differently.
    const PREINIT: bool;
    /// The operator's scope of the grant: the table named after the
    /// capability under a plugin's grant in `vigil.toml`, recorded as-is in
    /// the pack-load record. [`NoScope`] when the grant is all or nothing.
    type Grant: Serialize + DeserializeOwned + Default + Clone + Debug + PartialEq;
    /// The grant put in force at load, shared by every call of the plugin.
    type Shared: Debug + Send + Sync + 'static;
    /// What one call holds (a fresh one per call).
    type Ctx: Debug + Send + 'static;

    /// Problems with a scope as written, found when the policy is read.
    fn validate(_grant: &Self::Grant) -> Result<(), String> {
        Ok(())
    }

    /// Put the grant in force, or say why it cannot be (naming the entry
    /// and what to change).
    fn resolve(grant: Self::Grant, setup: &Setup<'_>) -> Result<Self::Shared, String>;

    /// What is wrong with a grant that loads anyway (it allows nothing, it
    /// outlasts the deadline), for `vigil check` and the load report.
    fn warnings(_grant: &Self::Grant, _setup: &Setup<'_>) -> Vec<String> {
        Vec::new()
    }

    /// A fresh context for one call ending at `deadline`.
    fn start_call(shared: &Arc<Self::Shared>, deadline: Instant) -> Self::Ctx;

    /// Link the interface for stores that carry this capability's context.
    fn add_to_linker<T: CallView<Self> + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()>;
}

/// Store data that carries capability `C`'s per-call context.
pub trait CallView<C: HostCapability> {
    /// The context of `C` for this call, and the call's host-call tape.
    fn parts(&mut self) -> (&mut C::Ctx, &mut Tape);
}

/// The scope of a capability whose grant is all or nothing: writing a
/// table for it in the policy is refused, since it would not do anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoScope {}

/// What a grant is put in force with.
#[derive(Debug)]
pub struct Setup<'a> {
    /// Pack name.
    pub pack: &'a str,
    /// Plugin id.
    pub plugin: &'a str,
    /// The plugin's config entries (from `pack.toml`), sorted by key.
    pub config: &'a [(String, String)],
    /// Log records allowed per call.
    pub log_records_per_call: usize,
    /// Wall-clock budget of one call.
    pub deadline: Duration,
    /// Origin of monotonic clock readings.
    pub clock_origin: Instant,
    /// Live resources, or the replay of a recorded run.
    pub mode: SetupMode<'a>,
}

/// Whether a grant reaches real resources.
#[derive(Debug)]
pub enum SetupMode<'a> {
    /// Loading a pack: the grant reaches real resources.
    Live {
        /// The pack's own files.
        pack_files: PackFiles<'a>,
        /// The audit directory's store of file contents (`None` without an
        /// audit log).
        file_store: Option<PathBuf>,
        /// `[secrets] file` of the policy.
        secrets_file: Option<&'a Path>,
        /// The host's state stores, one per plugin identity.
        state_stores: &'a StateStores,
    },
    /// Replaying a recorded invocation: the tape answers every host call,
    /// so resources only need the right shape and no secret is read.
    Replay {
        /// A directory for throwaway resources (a scratch state store).
        scratch: &'a Path,
        /// The audit directory's store of file contents.
        file_store: PathBuf,
    },
}
