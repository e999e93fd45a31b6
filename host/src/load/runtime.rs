//! The host runtime: operator-scoped objects shared by every pack load.
//!
//! Scope: operator configuration, built once per process. Per-pack state
//! lives in [`Generation`], per-call state in `sandbox::CallState`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use wasmtime::Engine;

use crate::load::engine::{ComponentCache, build_engine_for};
use crate::load::pack::{Generation, LoadContext, LoadErrors, PackSource};
use crate::load::policy::Policy;
use crate::revocation::Revocations;
use crate::state::stores::StateStores;

/// Engine, cache and policy: everything needed to load packs.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The engine every plugin runs on.
    pub engine: Engine,
    /// Compiled-component cache (under the state dir).
    pub cache: ComponentCache,
    /// The operator policy.
    pub policy: Policy,
    /// Plugin state directory.
    pub state_dir: PathBuf,
    /// The plugin state stores under `state_dir`, shared by every
    /// generation this runtime loads.
    pub state_stores: Arc<StateStores>,
    /// Revocations in force (from `<state_dir>/revocations.json`); `vigil
    /// run` keeps them current with [`crate::revocation::watch`], and its
    /// audit stage records grant changes through them.
    pub revocations: Arc<Revocations>,
    /// Where plugins' file reads are kept for replay (set by
    /// [`Runtime::keep_files_in`] when an audit log is open).
    file_store: Option<PathBuf>,
    clock_origin: Instant,
    generations: Arc<AtomicU64>,
}

impl Runtime {
    /// A runtime for `policy`, keeping state, the compile cache and the
    /// revocation list in `state_dir`.
    pub fn new(policy: Policy, state_dir: impl Into<PathBuf>) -> wasmtime::Result<Self> {
        let state_dir = state_dir.into();
        let revocations = Revocations::load(&state_dir)?;
        Ok(Runtime {
            revocations,
            engine: build_engine_for(policy.max_memory_bytes())?,
            cache: ComponentCache::in_dir(state_dir.join("cache")),
            policy,
            state_stores: Arc::new(StateStores::new(&state_dir)),
            state_dir,
            file_store: None,
            clock_origin: Instant::now(),
            generations: Arc::default(),
        })
    }

    /// Keep what plugins read through `files` in `dir` (the audit
    /// directory's `files/` store), so `vigil replay` can answer from it.
    pub fn keep_files_in(&mut self, dir: PathBuf) {
        self.file_store = Some(dir);
    }

    /// Load `source` with plugin state kept in this runtime's state dir.
    pub fn load(&self, source: PackSource) -> Result<Arc<Generation>, LoadErrors> {
        let number = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        self.load_into(source, &self.state_stores, number)
    }

    /// Load `source` keeping plugin state in `state_dir` instead (used by
    /// `vigil test`, which gives every case a fresh, empty state, and
    /// `vigil check`, which must not touch a running host's stores). Such
    /// a scratch generation is never current in a host, so it takes no
    /// generation number: its `number` is 0.
    pub fn load_with_state_dir(
        &self,
        source: PackSource,
        state_dir: &Path,
    ) -> Result<Arc<Generation>, LoadErrors> {
        self.load_into(source, &StateStores::new(state_dir), 0)
    }

    fn load_into(
        &self,
        source: PackSource,
        state_stores: &StateStores,
        generation: u64,
    ) -> Result<Arc<Generation>, LoadErrors> {
        let ctx = LoadContext {
            engine: &self.engine,
            cache: &self.cache,
            policy: &self.policy,
            state_stores,
            clock_origin: self.clock_origin,
            revocations: &self.revocations,
            generation,
            file_store: self.file_store.clone(),
        };
        Generation::load(&ctx, source).map(Arc::new)
    }
}
