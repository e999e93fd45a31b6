//! The per-call store data and the per-plugin linker.
//!
//! Scope: everything here lives for one call (one batch). A fresh
//! [`CallState`] is built from the plugin's grant for every call, so no
//! state leaks between batches except through the recorded `state`
//! capability.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::Linker;
use wasmtime::{Engine, ResourceLimiter};
use wasmtime_wasi::{WasiCtxView, WasiView};

use crate::audit::tape::Tape;
use crate::capability::clock::{ClockCtx, ClockView};
use crate::capability::config::{ConfigCtx, ConfigView};
use crate::capability::files::{FilesCtx, FilesPolicy, FilesView};
use crate::capability::http::{HttpCtx, HttpPolicy, HttpView};
use crate::capability::log::{LogCtx, LogView};
use crate::capability::state::{StateCtx, StateView};
use crate::capability::wasi::{WasiSandbox, WasiSandboxView};
use crate::capability::{self, Capability};
use crate::revocation::RevocationScope;
use crate::state_store::StateStore;

/// Bytes one table element is counted as (a function reference).
const TABLE_ELEMENT_BYTES: usize = 16;

/// Most elements one table may have (the pool reserves `table_elements`).
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The memory cap of one call, over the whole instance.
///
/// A component may hold several core modules, each with its own linear
/// memories and tables (the pool allows 4 memories per component), and
/// wasmtime asks the limiter about each one separately, starting at 0 when
/// it is created. Capping each request against the cap let four memories
/// reach four times the cap; this limiter adds every memory's and table's
/// growth into one total and refuses the request that would pass the cap.
#[derive(Debug)]
pub struct CallLimiter {
    memory_bytes: usize,
    /// Bytes of every memory and table of the instance so far.
    used: usize,
    /// Set when the guest tried to grow memory past the cap.
    pub memory_exceeded: bool,
}

impl CallLimiter {
    /// A limiter allowing `memory_bytes` for the whole instance.
    pub fn new(memory_bytes: usize) -> Self {
        CallLimiter {
            memory_bytes,
            used: 0,
            memory_exceeded: false,
        }
    }

    /// Bytes of memories and tables granted so far.
    pub fn used(&self) -> usize {
        self.used
    }

    fn grow(&mut self, bytes: usize) -> bool {
        match self.used.checked_add(bytes) {
            Some(total) if total <= self.memory_bytes => {
                self.used = total;
                true
            }
            _ => {
                self.memory_exceeded = true;
                false
            }
        }
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(desired.saturating_sub(current)))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        Ok(self.grow(
            desired
                .saturating_sub(current)
                .saturating_mul(TABLE_ELEMENT_BYTES),
        ))
    }
}

/// Store data for one call of one plugin.
#[derive(Debug)]
pub struct CallState {
    /// Memory cap enforcement.
    pub limiter: CallLimiter,
    /// Deny-all WASI context with captured stdio.
    pub wasi: WasiSandbox,
    /// Log records of this call.
    pub log: LogCtx,
    /// Every host call of this call, recorded or replayed.
    pub tape: Tape,
    config: ConfigCtx,
    clock: ClockCtx,
    /// `None` unless `state` is granted.
    state: Option<StateCtx>,
    /// `None` unless `http` is granted.
    http: Option<HttpCtx>,
    /// `None` unless `files` is granted.
    files: Option<FilesCtx>,
}

/// Everything a plugin's calls share, built once at load from its grant.
#[derive(Debug, Clone)]
pub struct CallTemplate {
    /// Memory cap per call.
    pub memory_bytes: usize,
    /// Log records allowed per call.
    pub log_budget: usize,
    /// Config entries, sorted by key.
    pub config: Arc<Vec<(String, String)>>,
    /// Monotonic clock origin.
    pub clock_origin: Instant,
    /// State store and granted prefixes, if `state` is granted.
    pub state: Option<(Arc<StateStore>, Arc<[String]>)>,
    /// The resolved grant, if `http` is granted.
    pub http: Option<Arc<HttpPolicy>>,
    /// The granted directories, opened, if `files` is granted.
    pub files: Option<Arc<FilesPolicy>>,
    /// Revocations checked on every host call (`None` in replay).
    pub revocations: Option<RevocationScope>,
}

impl CallTemplate {
    /// A live tape for one call: records every host call and refuses
    /// revoked capabilities.
    pub fn live_tape(&self) -> Tape {
        match &self.revocations {
            Some(scope) => Tape::recording(scope.clone()),
            None => Tape::default(),
        }
    }
}

impl CallState {
    /// Fresh store data for one call, with `tape` for its host calls,
    /// `random_seed` for its WASI random generators and the call's
    /// `deadline` (host calls that wait, like `http`, must not outlive it).
    pub fn new(
        template: &CallTemplate,
        tape: Tape,
        random_seed: [u8; 32],
        deadline: Instant,
    ) -> Self {
        CallState {
            limiter: CallLimiter::new(template.memory_bytes),
            wasi: WasiSandbox::new(random_seed, deadline),
            log: LogCtx::new(template.log_budget),
            tape,
            config: ConfigCtx::new(template.config.clone()),
            clock: ClockCtx::new(template.clock_origin),
            state: template
                .state
                .as_ref()
                .map(|(store, prefixes)| StateCtx::new(store.clone(), prefixes.clone())),
            http: (template.http.as_ref()).map(|policy| HttpCtx::new(policy.clone(), deadline)),
            files: (template.files.clone()).map(FilesCtx::new),
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.wasi.view()
    }
}

impl WasiSandboxView for CallState {
    fn sandbox(&mut self) -> &mut WasiSandbox {
        &mut self.wasi
    }
}

impl LogView for CallState {
    fn log_ctx(&mut self) -> (&mut LogCtx, &mut Tape) {
        (&mut self.log, &mut self.tape)
    }
}

impl ConfigView for CallState {
    fn config_ctx(&mut self) -> (&mut ConfigCtx, &mut Tape) {
        (&mut self.config, &mut self.tape)
    }
}

impl ClockView for CallState {
    fn clock_ctx(&mut self) -> (&mut ClockCtx, &mut Tape) {
        (&mut self.clock, &mut self.tape)
    }
}

impl StateView for CallState {
    fn state_ctx(&mut self) -> (&mut StateCtx, &mut Tape) {
        // Only reachable through the state interface, which is linked only
        // when the grant includes `state` (and then the context exists).
        let state = self
            .state
            .as_mut()
            .expect("state capability linked without a state grant");
        (state, &mut self.tape)
    }
}

impl HttpView for CallState {
    fn http_ctx(&mut self) -> (&mut HttpCtx, &mut Tape) {
        // Linked only when `http` is granted, and then the context exists.
        let http = self
            .http
            .as_mut()
            .expect("http capability linked without an http grant");
        (http, &mut self.tape)
    }
}

impl FilesView for CallState {
    fn files_ctx(&mut self) -> (&mut FilesCtx, &mut Tape) {
        // Linked only when `files` is granted, and then the context exists.
        let files = (self.files.as_mut()).expect("files capability linked without a files grant");
        (files, &mut self.tape)
    }
}

/// A linker with WASI (deny-all), the shared types, and exactly the granted
/// capabilities. An interface not in `granted` is not linked at all.
pub fn linker_for(engine: &Engine, granted: &[Capability]) -> wasmtime::Result<Linker<CallState>> {
    let mut linker = Linker::new(engine);
    capability::wasi::add_to_linker(&mut linker)?;
    // `types` declares data types only: no authority to grant.
    linker.instance(&format!(
        "{}/types@{}",
        capability::PACKAGE,
        capability::PACKAGE_VERSION
    ))?;
    for cap in granted {
        link(&mut linker, *cap)?;
    }
    Ok(linker)
}

/// Link one capability's interface: the one place that maps a
/// [`Capability`] to its module.
pub(crate) fn link(linker: &mut Linker<CallState>, cap: Capability) -> wasmtime::Result<()> {
    match cap {
        Capability::Log => capability::log::add_to_linker(linker),
        Capability::Config => capability::config::add_to_linker(linker),
        Capability::State => capability::state::add_to_linker(linker),
        Capability::Clock => capability::clock::add_to_linker(linker),
        Capability::Http => capability::http::add_to_linker(linker),
        Capability::Files => capability::files::add_to_linker(linker),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use wasmtime::Store;
    use wasmtime::component::Component;

    /// A component of `modules` core instances, each with its own memory
    /// that grows to 20 MiB at start (trapping if refused).
    fn multi_memory_component(modules: usize) -> String {
        let instances = "(core instance (instantiate $m))\n".repeat(modules);
        format!(
            r#"(component
                 (core module $m
                   (memory 1)
                   (func $grow
                     (if (i32.eq (memory.grow (i32.const 319)) (i32.const -1))
                       (then unreachable)))
                   (start $grow))
                 {instances})"#
        )
    }

    fn instantiate(engine: &Engine, wat: &str, cap: usize) -> (bool, CallLimiter) {
        let template = CallTemplate {
            memory_bytes: cap,
            log_budget: 10,
            config: Arc::default(),
            clock_origin: Instant::now(),
            state: None,
            http: None,
            files: None,
            revocations: None,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut store = Store::new(
            engine,
            CallState::new(&template, Tape::default(), [0; 32], deadline),
        );
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(crate::engine::deadline_ticks(Duration::from_secs(5)));
        let component = Component::new(engine, wat).expect("valid component");
        let linker = linker_for(engine, &[]).expect("linker");
        let ok = linker.instantiate(&mut store, &component).is_ok();
        (ok, store.into_data().limiter)
    }

    #[test]
    fn the_memory_cap_bounds_all_memories_of_an_instance_together() {
        let cap = 64 << 20;
        let engine = crate::engine::build_engine_for(cap as u64).expect("engine");
        // Three memories of 20 MiB fit under 64 MiB together ...
        let (ok, limiter) = instantiate(&engine, &multi_memory_component(3), cap);
        assert!(ok && !limiter.memory_exceeded);
        assert_eq!(limiter.used(), 3 * (20 << 20));
        // ... four do not, although each one alone would.
        let (ok, limiter) = instantiate(&engine, &multi_memory_component(4), cap);
        assert!(!ok && limiter.memory_exceeded);
        assert!(limiter.used() <= cap, "{} bytes granted", limiter.used());
    }

    #[test]
    fn the_pool_follows_the_policy_memory_cap() {
        // One memory of 20 MiB under an engine sized for 16 MiB instances
        // fails even when the call's own limiter would allow it.
        let engine = crate::engine::build_engine_for(16 << 20).expect("engine");
        let (ok, _) = instantiate(&engine, &multi_memory_component(1), 1 << 30);
        assert!(!ok);
    }
}
