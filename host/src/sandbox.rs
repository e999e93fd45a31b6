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
use crate::capability::http::{HttpCtx, HttpPolicy, HttpView};
use crate::capability::log::{LogCtx, LogView};
use crate::capability::state::{StateCtx, StateView};
use crate::capability::wasi::WasiSandbox;
use crate::capability::{self, Capability};
use crate::revocation::RevocationScope;
use crate::state_store::StateStore;

/// Memory and table growth limits for one call.
#[derive(Debug)]
pub struct CallLimiter {
    memory_bytes: usize,
    /// Set when the guest tried to grow memory past the cap.
    pub memory_exceeded: bool,
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.memory_exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
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
            limiter: CallLimiter {
                memory_bytes: template.memory_bytes,
                memory_exceeded: false,
            },
            wasi: WasiSandbox::new(random_seed),
            log: LogCtx::new(template.log_budget),
            tape,
            config: ConfigCtx::new(template.config.clone()),
            clock: ClockCtx::new(template.clock_origin),
            state: template
                .state
                .as_ref()
                .map(|(store, prefixes)| StateCtx::new(store.clone(), prefixes.clone())),
            http: (template.http.as_ref()).map(|policy| HttpCtx::new(policy.clone(), deadline)),
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.wasi.view()
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
        match cap {
            Capability::Log => capability::log::add_to_linker(&mut linker)?,
            Capability::Config => capability::config::add_to_linker(&mut linker)?,
            Capability::State => capability::state::add_to_linker(&mut linker)?,
            Capability::Clock => capability::clock::add_to_linker(&mut linker)?,
            Capability::Http => capability::http::add_to_linker(&mut linker)?,
        }
    }
    Ok(linker)
}
