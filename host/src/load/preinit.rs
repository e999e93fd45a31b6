//! Pre-initialisation: run a plugin's `init` once per pack load and snapshot
//! the initialised instance into a new component, so every per-batch fresh
//! instance starts from the initialised memory (mapped copy-on-write by the
//! pooling allocator) instead of paying `init` again. Isolation between
//! batches is unchanged: each batch still gets a fresh instance.
//!
//! How (wasmtime-wizer 48, component support): `Wizer::instrument_component`
//! adds exports that read every global and memory; the host instantiates
//! that instrumented component, calls `init(config)` itself through the
//! world's typed bindings, then `Wizer::snapshot_component` reads the state
//! through those exports and rewrites the original component with it.
//! wizer's own `run_component` is not used: it needs wasmtime's async
//! support and wave-encoded arguments, and the host already has typed
//! bindings for `init`.
//!
//! Which imports `init` may call: a snapshot holds linear memory and
//! globals, nothing the host keeps for the instance (WASI resources, open
//! handles) and no side effect repeated per instance. So only the
//! capabilities the registry marks `preinit` (`config`, `files`; see
//! `capability::Spec`) are linked for the snapshot run, when granted: both
//! are read-only and fixed for a generation (a file read is recorded with its
//! digest in the pack-load record). Every other import traps; a plugin whose
//! `init` calls one (logs, reads the clock or state, asks WASI for
//! randomness, e.g. through a randomly seeded `HashMap`) falls back to
//! running `init` on every fresh instance, as before, and the load report,
//! the pack-load record and `vigil check` say which mode it runs in and
//! why.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Instance, Lift, Linker, WasmList};
use wasmtime::{Engine, Store};
use wasmtime_wizer::{ComponentInstanceState, Wizer};

use crate::capability::tape::HostCall;
use crate::capability::tape::Tape;
use crate::capability::{self, Capability};
use crate::load::engine::{ComponentCache, deadline_ticks};
use crate::load::manifest::World;
use crate::plugin_text::{self, MAX_ERROR_BYTES};
pub use crate::run::init::InitMode;
use crate::run::plugin::{Declared, Detect, Enrich, WorldCall, check_declared};
use crate::run::sandbox::{self, CallState, CallTemplate};

/// The outcome of pre-initialising one plugin.
pub(crate) struct Preinitialised {
    /// The component instances are made from (the snapshot, or the
    /// original when falling back).
    pub component: Component,
    /// Which of the two.
    pub mode: InitMode,
    /// Host calls `init` made at load (`config`, `files`): of the
    /// snapshot run, or of the attempt that failed.
    pub host_calls: Vec<HostCall>,
    /// On replay: how the replayed `init`'s host calls differed from the
    /// record (`None`: they did not, or a live run).
    pub divergence: Option<String>,
}

/// One plugin's `init`, to be run and snapshotted.
pub(crate) struct InitRun<'a> {
    /// The engine instances run on.
    pub engine: &'a Engine,
    /// Where the instrumented and the snapshot component are compiled.
    pub cache: &'a ComponentCache,
    /// The plugin's component.
    pub bytes: &'a [u8],
    /// Its world (which `init` to call).
    pub world: World,
    /// Its effective capabilities (`config` and `files` are linked for
    /// the snapshot run when among them).
    pub effective: &'a [Capability],
    /// Its per-call context: config, files, memory cap.
    pub template: &'a CallTemplate,
    /// Its deadline, which bounds `init` here as on every call.
    pub deadline: Duration,
}

impl InitRun<'_> {
    /// Snapshot after `init`, or say why not and return `original`.
    /// `tape` records (live) or answers (replay) the host calls `init` makes;
    /// they are returned either way (a failed attempt's too).
    pub(crate) fn preinitialise(&self, original: Component, tape: Tape) -> Preinitialised {
        let mut store = None;
        let result = match self.world {
            World::Detector => self.snapshot::<Detect>(tape, &mut store),
            World::Enricher => self.snapshot::<Enrich>(tape, &mut store),
            World::Responder => Err("responders are not called yet".into()),
        };
        let (host_calls, divergence) = match store {
            Some(store) => {
                let tape = store.into_data().tape;
                let divergence = tape.divergence();
                (tape.into_calls().0, divergence)
            }
            None => (Vec::new(), None),
        };
        let (component, mode) = match result {
            Ok((snapshot, fields)) => (snapshot, InitMode::Snapshot { fields }),
            Err(why) => (
                original,
                InitMode::PerInstance {
                    why: plugin_text::clamp(why, MAX_ERROR_BYTES),
                },
            ),
        };
        Preinitialised {
            component,
            mode,
            host_calls,
            divergence,
        }
    }

    /// Instrument, instantiate, run `init` through world `W`, snapshot.
    /// `store` is left holding the run's store so its host calls can be
    /// taken whatever happened.
    fn snapshot<W: WorldCall>(
        &self,
        tape: Tape,
        store: &mut Option<Store<CallState>>,
    ) -> Result<(Component, Declared), String> {
        let InitRun {
            engine,
            cache,
            bytes,
            effective,
            template,
            deadline,
            ..
        } = *self;
        let wizer = Wizer::new();
        let (cx, instrumented) = wizer
            .instrument_component(bytes)
            .map_err(|e| format!("the component cannot be snapshotted: {e:#}"))?;
        let component = cache
            .load(engine, &instrumented)
            .map_err(|e| format!("the instrumented component does not compile: {e:#}"))?;
        let linker = snapshot_linker(engine, effective, &component)
            .map_err(|e| format!("the snapshot run cannot be linked: {e:#}"))?;

        let store = store.insert(Store::new(
            engine,
            CallState::new(template, tape, [0; 32], Instant::now() + deadline),
        ));
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(deadline_ticks(deadline));
        store.epoch_deadline_trap();
        let instance = linker
            .instantiate(&mut *store, &component)
            .map_err(|e| format!("the instrumented component does not instantiate: {e:#}"))?;
        let bindings = W::bind(&mut *store, &instance).map_err(|e| format!("{e:#}"))?;
        let declared = W::init(&bindings, store, &template.config)
            .map_err(|e| {
                format!("`init` called a host import other than config or files, or trapped: {e:#}")
            })?
            .map_err(|e| format!("`init` returned an error: {e:?}"))?;
        if let Some(fields) = &declared {
            check_declared(fields).map_err(|e| e.to_string())?;
        }
        // wizer reads the state through exports the instrumentation added;
        // they only copy globals and memory out, so the plugin's deadline
        // (which `init` may have used up) does not apply to them.
        store.set_epoch_deadline(deadline_ticks(SNAPSHOT_READ_BUDGET));
        let mut access = Access {
            store,
            instance,
            failed: None,
        };
        let snapshot = block_on(wizer.snapshot_component(&cx, &mut access))
            .ok_or("the snapshot waited on something; it never should")?
            .map_err(|e| format!("the snapshot failed: {e:#}"))?;
        if let Some(why) = access.failed {
            return Err(format!("reading the initialised state failed: {why}"));
        }
        let snapshot = cache
            .load(engine, &snapshot)
            .map_err(|e| format!("the snapshot does not compile: {e:#}"))?;
        Ok((snapshot, declared))
    }
}

/// How long reading an initialised instance's state may take.
const SNAPSHOT_READ_BUDGET: Duration = Duration::from_secs(600);

/// The snapshot run's linker: `types`, and the granted capabilities the
/// registry marks safe during a snapshot (`Spec::preinit`: `config`,
/// `files`); every other import traps when called.
fn snapshot_linker(
    engine: &Engine,
    effective: &[Capability],
    component: &Component,
) -> wasmtime::Result<Linker<CallState>> {
    let mut linker = Linker::new(engine);
    linker.instance(&format!(
        "{}/types@{}",
        capability::PACKAGE,
        capability::PACKAGE_VERSION
    ))?;
    for cap in effective.iter().filter(|c| c.spec().preinit) {
        sandbox::link(&mut linker, *cap)?;
    }
    linker.define_unknown_imports_as_traps(component)?;
    Ok(linker)
}

/// Drive a future that never waits: wizer's snapshot is `async` only so
/// that it can call into async stores; every call it makes here goes to
/// [`Access`], which answers synchronously, so the first poll completes.
/// `None` if it did not (it would be a wizer change; fall back, never spin).
fn block_on<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

/// wizer's view of the instrumented instance: call one of its state
/// exports and hand back the result. A failure (which the instrumentation
/// should make impossible) is kept in `failed` and the snapshot discarded.
struct Access<'a> {
    store: &'a mut Store<CallState>,
    instance: Instance,
    failed: Option<String>,
}

impl Access<'_> {
    fn call<R: Lift + 'static, O: Default>(
        &mut self,
        instance: &str,
        func: &str,
        use_result: impl FnOnce(&mut Store<CallState>, R) -> O,
    ) -> O {
        if self.failed.is_some() {
            return O::default();
        }
        let store = &mut *self.store;
        let found = (self.instance)
            .get_export(&mut *store, None, instance)
            .and_then(|(_, exported)| {
                (self.instance).get_export(&mut *store, Some(&exported), func)
            })
            .map(|(_, index)| index);
        let result = found
            .ok_or_else(|| format!("no export {instance}#{func}"))
            .and_then(|index| {
                (self.instance)
                    .get_typed_func::<(), (R,)>(&mut *store, index)
                    .and_then(|f| f.call(&mut *store, ()))
                    .map_err(|e| format!("{instance}#{func}: {e:#}"))
            });
        match result {
            Ok((value,)) => use_result(store, value),
            Err(why) => {
                self.failed = Some(why);
                O::default()
            }
        }
    }
}

impl ComponentInstanceState for Access<'_> {
    async fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) {
        let mut contents = Some(contents);
        self.call(instance, func, |store, list: WasmList<u8>| {
            if let Some(contents) = contents.take() {
                contents(list.as_le_slice(&*store))
            }
        });
        // wizer expects the callback to run; on a failure give it nothing
        // (the snapshot is discarded because `failed` is set).
        if let Some(contents) = contents.take() {
            contents(&[]);
        }
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        self.call(instance, func, |_, r| r)
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        self.call(instance, func, |_, r| r)
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        self.call(instance, func, |_, r: f32| r.to_bits())
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        self.call(instance, func, |_, r: f64| r.to_bits())
    }
}
