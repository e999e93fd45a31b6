//! The per-call store data and the per-plugin linker.
//!
//! Scope: everything here lives for one call (one batch). A fresh
//! [`CallState`] is built from the plugin's grant for every call, so no
//! state leaks between batches except through the recorded `state`
//! capability.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::Linker;
use wasmtime::{Engine, ResourceLimiter};
use wasmtime_wasi::{WasiCtxView, WasiView};

use crate::capability::registry::for_each_capability;
use crate::capability::tape::{RevocationCheck, Tape};
use crate::capability::wasi::{WasiSandbox, WasiSandboxView};
use crate::capability::{self, CallView, Capability, HostCapability, Setup};

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
    /// Every host call of this call, recorded or replayed.
    pub tape: Tape,
    /// The granted capabilities' contexts for this call.
    pub contexts: CallContexts,
}

macro_rules! per_capability {
    ($($name:ident: $variant:ident => $unit:ty),* $(,)?) => {
        /// Every effective capability's grant, put in force at load and
        /// shared by all calls of a plugin (`None` when not effective).
        #[derive(Debug, Clone, Default)]
        pub struct SharedGrants {
            $(
                #[doc = concat!("The resolved `", stringify!($name), "` grant.")]
                pub $name: Option<Arc<<$unit as HostCapability>::Shared>>,
            )*
        }

        impl SharedGrants {
            /// Put in force each of `effective` from its recorded scope in
            /// `scopes` (a missing scope is the capability's default), and
            /// collect what is wrong with grants that load anyway.
            pub fn resolve(
                effective: &[Capability],
                scopes: &BTreeMap<Capability, serde_json::Value>,
                setup: &Setup<'_>,
            ) -> Result<(SharedGrants, Vec<String>), GrantError> {
                let mut shared = SharedGrants::default();
                let mut warnings = Vec::new();
                for &capability in effective {
                    let fail = |message: String| GrantError { capability, message };
                    match capability {
                        $(Capability::$variant => {
                            let grant: <$unit as HostCapability>::Grant = match scopes.get(&capability) {
                                Some(value) => serde_json::from_value(value.clone()).map_err(|e| {
                                    fail(format!("the recorded {} grant does not fit: {e}", stringify!($name)))
                                })?,
                                None => Default::default(),
                            };
                            warnings.extend(<$unit as HostCapability>::warnings(&grant, setup));
                            shared.$name = Some(Arc::new(
                                <$unit as HostCapability>::resolve(grant, setup).map_err(fail)?,
                            ));
                        })*
                    }
                }
                Ok((shared, warnings))
            }

            fn start_call(&self, deadline: Instant) -> CallContexts {
                CallContexts {
                    $($name: self.$name.as_ref().map(|shared| {
                        <$unit as HostCapability>::start_call(shared, deadline)
                    }),)*
                }
            }
        }

        /// One call's context of each effective capability.
        #[derive(Debug)]
        pub struct CallContexts {
            $(
                #[doc = concat!("The `", stringify!($name), "` context, when granted.")]
                pub $name: Option<<$unit as HostCapability>::Ctx>,
            )*
        }

        $(
            impl CallView<$unit> for CallState {
                fn parts(&mut self) -> (&mut <$unit as HostCapability>::Ctx, &mut Tape) {
                    // Only reachable through the interface, which is linked
                    // only when the capability is effective, and then the
                    // context exists.
                    let ctx = self.contexts.$name.as_mut().expect(concat!(
                        stringify!($name),
                        " capability linked without its grant"
                    ));
                    (ctx, &mut self.tape)
                }
            }
        )*

        /// Link one capability's interface: the one place that maps a
        /// [`Capability`] to its module.
        pub(crate) fn link(linker: &mut Linker<CallState>, capability: Capability) -> wasmtime::Result<()> {
            match capability {
                $(Capability::$variant => <$unit as HostCapability>::add_to_linker(linker),)*
            }
        }
    };
}
for_each_capability!(per_capability);

/// A grant that cannot be put in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct GrantError {
    /// Whose grant.
    pub capability: Capability,
    /// Why, naming the entry and what to change.
    pub message: String,
}

/// Everything a plugin's calls share, built once at load from its grant.
#[derive(Debug, Clone)]
pub struct CallTemplate {
    /// Memory cap per call.
    pub memory_bytes: usize,
    /// Config entries as `init` receives them, sorted by key.
    pub config: Arc<Vec<(String, String)>>,
    /// The effective capabilities' grants, in force.
    pub grants: SharedGrants,
    /// Revocations checked on every host call (`None` in replay).
    pub revocations: Option<Arc<dyn RevocationCheck>>,
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
            tape,
            contexts: template.grants.start_call(deadline),
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
            config: Arc::default(),
            grants: SharedGrants::default(),
            revocations: None,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut store = Store::new(
            engine,
            CallState::new(&template, Tape::default(), [0; 32], deadline),
        );
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(crate::load::engine::deadline_ticks(Duration::from_secs(5)));
        let component = Component::new(engine, wat).expect("valid component");
        let linker = linker_for(engine, &[]).expect("linker");
        let ok = linker.instantiate(&mut store, &component).is_ok();
        (ok, store.into_data().limiter)
    }

    #[test]
    fn the_memory_cap_bounds_all_memories_of_an_instance_together() {
        let cap = 64 << 20;
        let engine = crate::load::engine::build_engine_for(cap as u64).expect("engine");
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
        let engine = crate::load::engine::build_engine_for(16 << 20).expect("engine");
        let (ok, _) = instantiate(&engine, &multi_memory_component(1), 1 << 30);
        assert!(!ok);
    }
}
