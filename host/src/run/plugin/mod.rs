//! A loaded plugin and one call into it.
//!
//! Every call gets a fresh store and instance from the pre-linked
//! component, an epoch deadline and a memory cap. A trap, a blown deadline
//! or a bad output fails that call only.
//!
//! Quarantine is for misbehaving code (see [`CallError::is_misbehaviour`]):
//! after `quarantine_after` misbehaving calls in a row the plugin gets no
//! calls for a back-off (`quarantine_ms`, 30 s by default). When it ends,
//! the next call is a probe: if it behaves the quarantine is lifted; if it
//! misbehaves the plugin is quarantined again at once with twice the
//! back-off, up to [`MAX_QUARANTINE`]; a probe that behaves resets the
//! doubling. A restore of any of the plugin's capabilities (`vigil
//! restore`, seen through [`crate::revocation::RevocationScope`]) lifts it
//! too. Every change is a [`QuarantineChange`] carried by the call it
//! happened on, so the audit log records it next to that invocation.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vigil_event::{Batch, Projection};
use wasmtime::{Engine, Store, Trap};

mod quarantine;
mod world;

pub(crate) use self::quarantine::Health;
pub use self::quarantine::{Admission, MAX_QUARANTINE, Quarantine, QuarantineChange, Ticket};
pub use self::world::{Declared, Detect, Enrich, WorldCall};

use crate::bindings::enricher::EnricherPre;
use crate::bindings::vigil::plugin::types::{Finding, PluginError};
use crate::bindings::{Detector, DetectorPre};
use crate::capability::Capability;
use crate::capability::log::{LogLevel, LogRecord, LogSource};
use crate::capability::tape::HostCall;
use crate::capability::tape::Tape;
use crate::capability::wasi::{BlockedPastDeadline, fresh_seed};
use crate::load::engine::deadline_ticks;
use crate::plugin_text::{self, MAX_ERROR_BYTES};
use crate::run::init::InitMode;
use crate::run::limits::Limits;
use crate::run::sandbox::{CallState, CallTemplate};
use crate::run::watchdog;
use crate::state::store::StateStore;

/// Why one call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The epoch deadline interrupted the call.
    #[error("exceeded its deadline of {0:?}")]
    Deadline(Duration),
    /// The guest tried to grow memory past its cap.
    #[error("exceeded its memory cap of {} MiB", .0 >> 20)]
    MemoryLimit(u64),
    /// Any other trap.
    #[error("trapped: {0}")]
    Trap(String),
    /// Creating the instance failed.
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
    /// `init` returned an error.
    #[error("init failed: {0}")]
    Init(String),
    /// `detect` returned an error.
    #[error("returned an error: {0}")]
    Plugin(String),
    /// More findings than `max_findings_per_batch`.
    #[error("returned {count} findings, more than the limit of {max} per batch")]
    TooManyFindings {
        /// Findings returned.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// More output, as emitted JSON, than `max_output_bytes`.
    #[error("returned {bytes} bytes of output (as emitted JSON), more than the limit of {max}")]
    OutputTooLarge {
        /// Bytes returned.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A finding or enrichment carried more entries of one kind than allowed.
    #[error("returned a finding with {count} {what}, more than the limit of {max}")]
    TooManyEntries {
        /// `evidence entries` or `techniques`.
        what: &'static str,
        /// Entries returned.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A finding pointed at an event not in the batch.
    #[error("returned a finding for event {0}, which is not in the batch")]
    UnknownEvent(u64),
    /// The plugin was called through a world it does not implement.
    #[error("is a {0} plugin, not a {1}")]
    WrongWorld(&'static str, &'static str),
}

impl CallError {
    /// Whether the failure is the plugin's code misbehaving, which counts
    /// towards quarantine: a trap, a deadline overrun, the memory cap, an
    /// instance that cannot start, or output the host refuses (too many
    /// findings, too many bytes or entries, a finding for an event not in
    /// the batch).
    ///
    /// An error value the plugin returns ([`CallError::Plugin`] from
    /// `detect`/`enrich`, [`CallError::Init`] from `init`) is not
    /// misbehaviour: it is how a plugin reports a denied or revoked host
    /// call, a rate limit or an unavailable service, and quarantining it
    /// would turn one bad minute of a remote service, or a revocation
    /// already undone, into a plugin disabled for good. Such errors neither
    /// count towards the streak nor reset it; a successful call resets it.
    /// [`CallError::WrongWorld`] is the host's mistake, not the plugin's.
    pub fn is_misbehaviour(&self) -> bool {
        match self {
            CallError::Deadline(_)
            | CallError::MemoryLimit(_)
            | CallError::Trap(_)
            | CallError::Instantiate(_)
            | CallError::TooManyFindings { .. }
            | CallError::OutputTooLarge { .. }
            | CallError::TooManyEntries { .. }
            | CallError::UnknownEvent(_) => true,
            CallError::Init(_) | CallError::Plugin(_) | CallError::WrongWorld(..) => false,
        }
    }
}

/// The result of one call: findings from a detector, an enrichment from
/// an enricher.
#[derive(Debug)]
pub struct CallOutcome<T = Vec<Finding>> {
    /// The output, or why the call failed.
    pub result: Result<T, CallError>,
    /// Log records and captured stdout/stderr of the call, in order.
    pub logs: Vec<LogRecord>,
    /// Log records refused for exceeding the budget.
    pub logs_dropped: u64,
    /// Every host call, in order (see `audit::tape`).
    pub host_calls: Vec<HostCall>,
    /// Host calls refused past the recording limits.
    pub host_calls_refused: u64,
    /// Seed of the call's WASI random generators.
    pub random_seed: [u8; 32],
    /// Wall time of the call, instantiation included.
    pub elapsed: Duration,
    /// Whether this call was the probe at the end of a quarantine.
    pub probe: bool,
    /// Quarantine changes decided before the call (recorded before its
    /// invocation record): a lift by a restore, the start of a probe.
    pub before: Vec<QuarantineChange>,
    /// The quarantine change this call caused (recorded after it):
    /// quarantined, or lifted by a probe that behaved.
    pub after: Option<QuarantineChange>,
}

impl<T> CallOutcome<T> {
    /// Whether this call quarantined the plugin.
    pub fn quarantined_now(&self) -> bool {
        matches!(self.after, Some(QuarantineChange::Quarantined { .. }))
    }
}

/// A component pre-linked for the world its manifest declares (built when
/// a pack loads; [`WorldCall::instantiate`] picks its world's variant).
pub enum PluginPre {
    /// `detector`: `init` then `detect(batch)`.
    Detector(DetectorPre<CallState>),
    /// `enricher`: `init` then `enrich(finding)`.
    Enricher(EnricherPre<CallState>),
}

impl PluginPre {
    /// The world it was linked for, for [`CallError::WrongWorld`].
    fn world(&self) -> &'static str {
        match self {
            PluginPre::Detector(_) => "detector",
            PluginPre::Enricher(_) => "enricher",
        }
    }
}

/// A plugin ready to be called (a detector or an enricher).
pub struct LoadedPlugin {
    /// Pack name.
    pub pack: Arc<str>,
    /// Pack version.
    pub pack_version: Arc<str>,
    /// Generation the plugin was loaded in.
    pub generation: u64,
    /// Plugin id.
    pub id: Arc<str>,
    /// SHA-256 of the component bytes.
    pub digest: String,
    /// SHA-256 of its grant set (see `load::grants::GrantSet`).
    pub grants_digest: String,
    /// Effective capabilities (requested ∩ granted), the only ones linked.
    pub effective: Vec<Capability>,
    /// Resolved limits.
    pub limits: Limits,
    pub(crate) engine: Engine,
    pub(crate) pre: PluginPre,
    pub(crate) template: CallTemplate,
    /// Whether instances start from a snapshot taken after `init`.
    pub(crate) init: InitMode,
    /// For a snapshotted plugin: the original component, linked, used
    /// when a capability its `init` read has been revoked since.
    pub(crate) per_instance: Option<PluginPre>,
    pub(crate) health: Mutex<Health>,
    /// The last field list the plugin declared, compiled. Plugins declare
    /// the same list on every `init`, so this is compiled once.
    pub(crate) projection: Mutex<Option<(Vec<String>, Arc<Projection>)>>,
}

/// Most field paths a plugin may declare, and the longest path.
/// Guest-controlled: a plugin cannot make the host build a huge projection.
const MAX_FIELDS: usize = 256;
const MAX_FIELD_BYTES: usize = 512;

/// Refuse a declared field list over [`MAX_FIELDS`] paths or with a path
/// over [`MAX_FIELD_BYTES`] (as an `init` error).
pub(crate) fn check_declared(fields: &[String]) -> Result<(), CallError> {
    if fields.len() > MAX_FIELDS || fields.iter().any(|f| f.len() > MAX_FIELD_BYTES) {
        return Err(CallError::Init(format!(
            "declared {} event fields; at most {MAX_FIELDS} paths of at most {MAX_FIELD_BYTES} bytes are allowed",
            fields.len()
        )));
    }
    Ok(())
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("pack", &self.pack)
            .field("id", &self.id)
            .field("effective", &self.effective)
            .finish_non_exhaustive()
    }
}

/// A plugin's error value as the host keeps it. Guest-controlled: clamped,
/// so a 40 MB message is neither printed nor recorded in full.
pub(super) fn plugin_error_text(e: &PluginError) -> String {
    let text = match e {
        PluginError::InvalidConfig(m) => format!("invalid config: {m}"),
        PluginError::InvalidEvent(m) => format!("invalid event: {m}"),
        PluginError::Internal(m) => format!("internal error: {m}"),
    };
    plugin_text::clamp(text, MAX_ERROR_BYTES)
}

impl LoadedPlugin {
    /// The plugin's state store, if `state` is granted.
    pub fn state_store(&self) -> Option<&Arc<StateStore>> {
        self.template
            .grants
            .state
            .as_ref()
            .map(|state| &state.store)
    }

    /// How its instances start: from a snapshot taken after `init`, or
    /// running `init` each time (and why).
    pub fn init_mode(&self) -> &InitMode {
        &self.init
    }

    /// `pack/plugin`, for messages.
    pub fn label(&self) -> String {
        format!("{}/{}", self.pack, self.id)
    }

    /// Create a fresh store and instance and drop them, without calling into
    /// the guest: the fixed cost every call pays (measured by `cargo bench`).
    pub fn instantiate_only(&self) -> wasmtime::Result<()> {
        let mut store = self.new_store_with(Tape::default(), [0; 32]);
        match &self.pre {
            PluginPre::Detector(pre) => pre.instantiate(&mut store).map(drop),
            PluginPre::Enricher(pre) => pre.instantiate(&mut store).map(drop),
        }
    }

    /// One call through world `W` on a fresh instance, under a ticket from
    /// [`LoadedPlugin::admit`] (whether or not the plugin is quarantined:
    /// the caller asks first). The one call path of every world: fresh
    /// store and instance, `init` unless the instance starts from the
    /// load-time snapshot, the world's entry point, output checks, then
    /// [`LoadedPlugin::finish`] collects the record and updates quarantine.
    pub fn call<W: WorldCall>(&self, ticket: Ticket, input: &W::Input) -> CallOutcome<W::Output> {
        let started = Instant::now();
        let _watch = watchdog::watch(|| self.label(), started + self.limits.deadline);
        let random_seed = fresh_seed();
        let mut store = self.new_store_with(self.template.live_tape(), random_seed);
        let result = self.run::<W>(&mut store, input);
        self.finish(ticket, store, result, started, random_seed)
    }

    /// A detector call outside the dispatcher (tests, benchmarks):
    /// `call::<Detect>` without a ticket.
    pub fn detect(&self, batch: &Batch) -> CallOutcome {
        self.call::<Detect>(Ticket::default(), batch)
    }

    /// Collect what a finished call left in its store: host calls, logs
    /// and captured stdio; save state; update the failure streak.
    fn finish<T>(
        &self,
        ticket: Ticket,
        store: Store<CallState>,
        result: Result<T, CallError>,
        started: Instant,
        random_seed: [u8; 32],
    ) -> CallOutcome<T> {
        if let Some(store) = self.state_store()
            && let Err(e) = store.flush()
        {
            tracing::error!(plugin = %self.label(), error = %e, "plugin state could not be saved");
        }

        let data = store.into_data();
        let (host_calls, host_calls_refused) = data.tape.into_calls();
        let (mut logs, logs_dropped) = (data.contexts.log)
            .map(|log| (log.records, log.dropped))
            .unwrap_or_default();
        let (stdout, stderr) = data.wasi.captured();
        for (bytes, source, level) in [
            (stdout, LogSource::Stdout, LogLevel::Info),
            (stderr, LogSource::Stderr, LogLevel::Warn),
        ] {
            for line in String::from_utf8_lossy(&bytes)
                .lines()
                .filter(|l| !l.trim().is_empty())
            {
                logs.push(LogRecord {
                    source,
                    level,
                    message: line.to_owned(),
                    fields: Vec::new(),
                });
            }
        }
        let after = self.record_health(&result, ticket.probe);
        CallOutcome {
            result,
            logs,
            logs_dropped,
            host_calls,
            host_calls_refused,
            random_seed,
            elapsed: started.elapsed(),
            probe: ticket.probe,
            before: ticket.before,
            after,
        }
    }

    /// Re-run one call of world `W` with host calls answered from `tape`
    /// (a replay tape) and the recorded random seed. Touches no state and
    /// no clock, and does not count towards quarantine. Returns the result
    /// and the first divergence from the recorded host calls.
    pub fn replay<W: WorldCall>(
        &self,
        input: &W::Input,
        tape: Tape,
        random_seed: [u8; 32],
    ) -> (Result<W::Output, CallError>, Option<String>) {
        let mut store = self.new_store_with(tape, random_seed);
        let result = self.run::<W>(&mut store, input);
        let divergence = store.data().tape.divergence();
        (result, divergence)
    }

    /// Map a wasmtime error from a call into this store to a [`CallError`].
    pub(super) fn classify(&self, store: &Store<CallState>, e: wasmtime::Error) -> CallError {
        if store.data().limiter.memory_exceeded {
            CallError::MemoryLimit(self.limits.memory_bytes)
        } else if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt)
            || e.downcast_ref::<BlockedPastDeadline>().is_some()
        {
            CallError::Deadline(self.limits.deadline)
        } else {
            CallError::Trap(plugin_text::clamp(format!("{e:#}"), MAX_ERROR_BYTES))
        }
    }

    /// Instantiate world `W` into `store` and run `init` unless the
    /// instance starts from the snapshot; returns the instance and the
    /// compiled projection of the fields it declared (`None`: whole events).
    fn start<W: WorldCall>(
        &self,
        store: &mut Store<CallState>,
    ) -> Result<(W::Instance, Option<Arc<Projection>>), CallError> {
        let snapshot = self.snapshot_in_force();
        let pre = match snapshot {
            Some(_) => &self.pre,
            None => self.per_instance.as_ref().unwrap_or(&self.pre),
        };
        let instance = W::instantiate(pre, store)
            .ok_or(CallError::WrongWorld(self.pre.world(), W::WORLD.name()))?
            .map_err(|e| match self.classify(store, e) {
                CallError::Trap(m) => CallError::Instantiate(m),
                other => other,
            })?;
        let projection = match snapshot {
            // `init` ran at load; the instance starts from its snapshot.
            Some(declared) => declared.as_deref().map(|f| self.compile_projection(f)),
            None => W::init(&instance, store, &self.template.config)
                .map_err(|e| self.classify(store, e))?
                .map_err(|e| CallError::Init(plugin_error_text(&e)))?
                .map(|f| self.compile_projection(&f)),
        }
        .transpose()?;
        Ok((instance, projection))
    }

    fn run<W: WorldCall>(
        &self,
        store: &mut Store<CallState>,
        input: &W::Input,
    ) -> Result<W::Output, CallError> {
        let (instance, projection) = self.start::<W>(store)?;
        let mut scratch = Batch::new();
        W::invoke(
            self,
            &instance,
            store,
            projection.as_deref(),
            input,
            &mut scratch,
        )
    }

    /// Compile the declared field list, reusing the last one when unchanged.
    fn compile_projection(&self, fields: &[String]) -> Result<Arc<Projection>, CallError> {
        check_declared(fields)?;
        let mut cached = self.projection.lock().unwrap_or_else(|p| p.into_inner());
        Ok(match &*cached {
            Some((declared, projection)) if declared == fields => projection.clone(),
            _ => {
                let projection = Arc::new(Projection::new(fields));
                *cached = Some((fields.to_vec(), projection.clone()));
                projection
            }
        })
    }

    /// Whether instances start from the load-time snapshot now: not when a
    /// capability `init` read at load (`config`, `files`) has since been
    /// revoked, since the snapshot holds what it read. Then `init` runs
    /// again on the original component and meets the revocation.
    fn snapshot_in_force(&self) -> Option<&Declared> {
        let InitMode::Snapshot { fields } = &self.init else {
            return None;
        };
        let revoked = (self.template.revocations.as_ref()).is_some_and(|scope| {
            (self.effective.iter()).any(|c| c.spec().preinit && scope.revoked(*c).is_some())
        });
        (!revoked).then_some(fields)
    }

    /// A live instance for repeated calls without re-instantiating: used by
    /// the benchmarks to measure per-event cost on a warm instance. The
    /// dispatcher does not use it: it gives every batch a fresh instance so
    /// nothing but recorded `state` carries between batches.
    pub fn warm_instance(&self) -> Result<WarmInstance<'_>, CallError> {
        let mut store = self.new_store_with(Tape::default(), fresh_seed());
        let (detector, projection) = self.start::<Detect>(&mut store)?;
        Ok(WarmInstance {
            plugin: self,
            store,
            detector,
            projection,
            scratch: Batch::new(),
        })
    }

    fn new_store_with(&self, tape: Tape, random_seed: [u8; 32]) -> Store<CallState> {
        let deadline = Instant::now() + self.limits.deadline;
        let mut store = Store::new(
            &self.engine,
            CallState::new(&self.template, tape, random_seed, deadline),
        );
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(deadline_ticks(self.limits.deadline));
        store.epoch_deadline_trap();
        store
    }
}

/// An instantiated, initialised plugin kept across calls. See
/// [`LoadedPlugin::warm_instance`].
pub struct WarmInstance<'p> {
    plugin: &'p LoadedPlugin,
    store: Store<CallState>,
    detector: Detector,
    projection: Option<Arc<Projection>>,
    /// The projected batch, reused across calls.
    scratch: Batch,
}

impl WarmInstance<'_> {
    /// Call `detect` on this instance, with a fresh deadline.
    pub fn detect(&mut self, batch: &Batch) -> Result<Vec<Finding>, CallError> {
        self.store
            .set_epoch_deadline(deadline_ticks(self.plugin.limits.deadline));
        Detect::invoke(
            self.plugin,
            &self.detector,
            &mut self.store,
            self.projection.as_deref(),
            batch,
            &mut self.scratch,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_misbehaviour_counts_towards_quarantine_not_error_values() {
        let misbehaving = [
            CallError::Deadline(Duration::from_millis(1)),
            CallError::MemoryLimit(1),
            CallError::Trap("x".into()),
            CallError::Instantiate("x".into()),
            CallError::TooManyFindings { count: 2, max: 1 },
            CallError::OutputTooLarge { bytes: 2, max: 1 },
            CallError::TooManyEntries {
                what: "techniques",
                count: 2,
                max: 1,
            },
            CallError::UnknownEvent(9),
        ];
        assert!(misbehaving.iter().all(CallError::is_misbehaviour));
        let returned = [
            CallError::Plugin("internal error: http access denied".into()),
            CallError::Init("invalid config: x".into()),
            CallError::WrongWorld("detector", "enricher"),
        ];
        assert!(!returned.iter().any(CallError::is_misbehaviour));
    }
}
