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
//! the pack-load record and `vigil inspect` say which mode it runs in and
//! why.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wasmtime::component::{Component, Instance, Lift, Linker, WasmList};
use wasmtime::{Engine, Store};
use wasmtime_wizer::{ComponentInstanceState, Wizer};

use crate::audit::record::HostCall;
use crate::audit::tape::Tape;
use crate::bindings::Detector;
use crate::bindings::enricher::Enricher;
use crate::capability::{self, Capability};
use crate::engine::{ComponentCache, deadline_ticks};
use crate::manifest::World;
use crate::sandbox::{self, CallState, CallTemplate};

/// How a plugin's instances start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum InitMode {
    /// From a snapshot taken after `init` at load; `init` is not called per
    /// instance. `fields` is what `init` declared (detectors).
    Snapshot {
        /// Event fields the detector declared (`None`: whole events).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fields: Option<Vec<String>>,
    },
    /// `init(config)` runs on every fresh instance.
    PerInstance {
        /// Why no snapshot was taken.
        why: String,
    },
}

impl InitMode {
    /// `snapshot` or `per-instance`, for reports.
    pub fn name(&self) -> &'static str {
        match self {
            InitMode::Snapshot { .. } => "snapshot",
            InitMode::PerInstance { .. } => "per-instance",
        }
    }
}

/// The outcome of pre-initialising one plugin.
pub(crate) struct Preinitialised {
    /// The component instances are made from (the snapshot, or the
    /// original when falling back).
    pub component: Component,
    /// Which of the two.
    pub mode: InitMode,
    /// Host calls `init` made during the snapshot run (`config`, `files`).
    pub host_calls: Vec<HostCall>,
}

/// Detector fields declared by `init`, as `init` returned them.
type Fields = Option<Vec<String>>;

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
    /// `tape` records (live) or answers (replay) the host calls `init` makes.
    pub(crate) fn preinitialise(&self, original: Component, tape: Tape) -> Preinitialised {
        match self.snapshot(tape) {
            Ok((component, fields, host_calls)) => Preinitialised {
                component,
                mode: InitMode::Snapshot { fields },
                host_calls,
            },
            Err(why) => Preinitialised {
                component: original,
                mode: InitMode::PerInstance { why },
                host_calls: Vec::new(),
            },
        }
    }

    fn snapshot(&self, tape: Tape) -> Result<(Component, Fields, Vec<HostCall>), String> {
        let InitRun {
            engine,
            cache,
            bytes,
            world,
            effective,
            template,
            deadline,
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

        let mut store = Store::new(
            engine,
            CallState::new(template, tape, [0; 32], Instant::now() + deadline),
        );
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(deadline_ticks(deadline));
        store.epoch_deadline_trap();
        let instance = linker
            .instantiate(&mut store, &component)
            .map_err(|e| format!("the instrumented component does not instantiate: {e:#}"))?;
        let why_not = |e: wasmtime::Error| {
            format!("`init` called a host import other than config or files, or trapped: {e:#}")
        };
        let fields = match world {
            World::Detector => {
                let detector =
                    Detector::new(&mut store, &instance).map_err(|e| format!("{e:#}"))?;
                let info = detector
                    .call_init(&mut store, &template.config)
                    .map_err(why_not)?
                    .map_err(|e| format!("`init` returned an error: {e:?}"))?;
                info.fields
            }
            World::Enricher => {
                let enricher =
                    Enricher::new(&mut store, &instance).map_err(|e| format!("{e:#}"))?;
                enricher
                    .call_init(&mut store, &template.config)
                    .map_err(why_not)?
                    .map_err(|e| format!("`init` returned an error: {e:?}"))?;
                None
            }
            World::Responder => return Err("responders are not pre-initialised yet".into()),
        };
        // The state reads below run under the same epoch deadline; `init` may
        // have used most of it.
        store.set_epoch_deadline(deadline_ticks(deadline));
        let snapshot = block_on(wizer.snapshot_component(
            &cx,
            &mut Access {
                store: &mut store,
                instance,
            },
        ))
        .map_err(|e| format!("the snapshot failed: {e:#}"))?;
        let snapshot = cache
            .load(engine, &snapshot)
            .map_err(|e| format!("the snapshot does not compile: {e:#}"))?;
        let (host_calls, _) = store.into_data().tape.into_calls();
        Ok((snapshot, fields, host_calls))
    }
}

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
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// wizer's view of the instrumented instance: call one of its state
/// exports and hand back the result.
struct Access<'a> {
    store: &'a mut Store<CallState>,
    instance: Instance,
}

impl Access<'_> {
    fn call<R: Lift + 'static, O>(
        &mut self,
        instance: &str,
        func: &str,
        use_result: impl FnOnce(&mut Store<CallState>, R) -> O,
    ) -> O {
        // The instrumented component exports these by construction
        // (`instrument_component` added them), so a miss is a wizer bug.
        let (_, exported) = (self.instance)
            .get_export(&mut *self.store, None, instance)
            .expect("wizer's instrumentation exports its state instance");
        let (_, index) = (self.instance)
            .get_export(&mut *self.store, Some(&exported), func)
            .expect("wizer's instrumentation exports its state functions");
        let func = (self.instance)
            .get_typed_func::<(), (R,)>(&mut *self.store, index)
            .expect("wizer's state functions have the types it asks for");
        let (result,) = func
            .call(&mut *self.store, ())
            .expect("reading a global or a memory does not trap");
        use_result(self.store, result)
    }
}

impl ComponentInstanceState for Access<'_> {
    async fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) {
        self.call(instance, func, |store, list: WasmList<u8>| {
            contents(list.as_le_slice(&*store))
        })
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
