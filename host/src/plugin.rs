//! A loaded plugin and one call into it.
//!
//! Every call gets a fresh store and instance from the pre-linked
//! component, an epoch deadline and a memory cap. A trap, a blown deadline
//! or a bad output fails that call only; after `quarantine_after`
//! consecutive failures the plugin is quarantined and skipped (a plugin
//! error after the host throttled its http requests is not counted).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vigil_event::{Batch, Projection};
use wasmtime::{Engine, Store, Trap};

use crate::bindings::enricher::{Enricher, EnricherPre};
use crate::bindings::{Detector, DetectorPre};

use crate::audit::record::HostCall;
use crate::audit::tape::Tape;
use crate::bindings::vigil::plugin::types::{Enrichment, Finding, PluginError};
use crate::capability::Capability;
use crate::capability::log::{LogLevel, LogRecord, LogSource};
use crate::capability::wasi::{BlockedPastDeadline, fresh_seed};
use crate::engine::deadline_ticks;
use crate::output::{MAX_EVIDENCE_PER_FINDING, MAX_TECHNIQUES, emitted_bytes, enrichment_bytes};
use crate::plugin_text::{self, MAX_ERROR_BYTES};
use crate::policy::Limits;
use crate::sandbox::{CallState, CallTemplate};
use crate::watchdog;

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
    /// Set when this call's failure quarantined the plugin.
    pub quarantined_now: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Health {
    consecutive_failures: u32,
    quarantine_reason: Option<String>,
}

/// A component pre-linked for the world its manifest declares.
pub(crate) enum PluginPre {
    /// `detector`: `init` then `detect(batch)`.
    Detector(DetectorPre<CallState>),
    /// `enricher`: `init` then `enrich(finding)`.
    Enricher(EnricherPre<CallState>),
}

impl PluginPre {
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
    /// SHA-256 of its grant set (see `audit::record::GrantSet`).
    pub grants_digest: String,
    /// Effective capabilities (requested ∩ granted), the only ones linked.
    pub effective: Vec<Capability>,
    /// Resolved limits.
    pub limits: Limits,
    pub(crate) engine: Engine,
    pub(crate) pre: PluginPre,
    pub(crate) template: CallTemplate,
    pub(crate) health: Mutex<Health>,
    /// The last field list the plugin declared, compiled. Plugins declare
    /// the same list on every `init`, so this is compiled once.
    pub(crate) projection: Mutex<Option<(Vec<String>, Arc<Projection>)>>,
}

/// Most field paths a plugin may declare, and the longest path.
/// Guest-controlled: a plugin cannot make the host build a huge projection.
const MAX_FIELDS: usize = 256;
const MAX_FIELD_BYTES: usize = 512;

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
fn plugin_error_text(e: &PluginError) -> String {
    let text = match e {
        PluginError::InvalidConfig(m) => format!("invalid config: {m}"),
        PluginError::InvalidEvent(m) => format!("invalid event: {m}"),
        PluginError::Internal(m) => format!("internal error: {m}"),
    };
    plugin_text::clamp(text, MAX_ERROR_BYTES)
}

impl LoadedPlugin {
    /// `pack/plugin`, for messages.
    pub fn label(&self) -> String {
        format!("{}/{}", self.pack, self.id)
    }

    /// Why the plugin is quarantined, if it is.
    pub fn quarantine_reason(&self) -> Option<String> {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .quarantine_reason
            .clone()
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

    /// Run `batch` through a fresh instance: `init(config)` then `detect`.
    pub fn detect(&self, batch: &Batch) -> CallOutcome {
        let started = Instant::now();
        let _watch = watchdog::watch(|| self.label(), started + self.limits.deadline);
        let random_seed = fresh_seed();
        let mut store = self.new_store_with(self.template.live_tape(), random_seed);
        let result = self.call(&mut store, batch);
        self.finish(store, result, started, random_seed)
    }

    /// Run `finding` through a fresh instance of an enricher: `init(config)`
    /// then `enrich`.
    pub fn enrich(&self, finding: &Finding) -> CallOutcome<Enrichment> {
        let started = Instant::now();
        let _watch = watchdog::watch(|| self.label(), started + self.limits.deadline);
        let random_seed = fresh_seed();
        let mut store = self.new_store_with(self.template.live_tape(), random_seed);
        let result = self.call_enrich(&mut store, finding);
        self.finish(store, result, started, random_seed)
    }

    /// Re-run an enrichment of `finding` with host calls answered from
    /// `tape`; see [`LoadedPlugin::replay`].
    pub fn replay_enrich(
        &self,
        finding: &Finding,
        tape: Tape,
        random_seed: [u8; 32],
    ) -> (Result<Enrichment, CallError>, Option<String>) {
        let mut store = self.new_store_with(tape, random_seed);
        let result = self.call_enrich(&mut store, finding);
        let divergence = store.data().tape.divergence();
        (result, divergence)
    }

    fn call_enrich(
        &self,
        store: &mut Store<CallState>,
        finding: &Finding,
    ) -> Result<Enrichment, CallError> {
        let PluginPre::Enricher(pre) = &self.pre else {
            return Err(CallError::WrongWorld(self.pre.world(), "enricher"));
        };
        let enricher: Enricher =
            pre.instantiate(&mut *store)
                .map_err(|e| match self.classify(store, e) {
                    CallError::Trap(m) => CallError::Instantiate(m),
                    other => other,
                })?;
        enricher
            .call_init(&mut *store, &self.template.config)
            .map_err(|e| self.classify(store, e))?
            .map_err(|e| CallError::Init(plugin_error_text(&e)))?;
        let enrichment = enricher
            .call_enrich(&mut *store, finding)
            .map_err(|e| self.classify(store, e))?
            .map_err(|e| CallError::Plugin(plugin_error_text(&e)))?;
        if enrichment.techniques.len() > MAX_TECHNIQUES {
            return Err(CallError::TooManyEntries {
                what: "techniques",
                count: enrichment.techniques.len(),
                max: MAX_TECHNIQUES,
            });
        }
        let bytes = enrichment_bytes(&enrichment);
        if bytes > self.limits.max_output_bytes {
            return Err(CallError::OutputTooLarge {
                bytes,
                max: self.limits.max_output_bytes,
            });
        }
        Ok(enrichment)
    }

    /// Collect what a finished call left in its store: host calls, logs
    /// and captured stdio; save state; update the failure streak.
    fn finish<T>(
        &self,
        store: Store<CallState>,
        result: Result<T, CallError>,
        started: Instant,
        random_seed: [u8; 32],
    ) -> CallOutcome<T> {
        if let Some(store) = &self.template.state
            && let Err(e) = store.0.flush()
        {
            tracing::error!(plugin = %self.label(), error = %e, "plugin state could not be saved");
        }

        let data = store.into_data();
        let (host_calls, host_calls_refused) = data.tape.into_calls();
        let mut logs = data.log.records;
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
        // A plugin that returned an error because the host throttled its
        // http requests (the grant's requests_per_minute, a service's
        // Retry-After) did nothing wrong: the call neither counts towards
        // quarantine nor ends a failure streak. Otherwise one 429 would
        // quarantine an enricher for the rest of the run, long after the
        // service is willing again.
        let throttled = matches!(result, Err(CallError::Plugin(_)))
            && (host_calls.iter())
                .any(|c| c.interface == "http" && c.result["error"] == "rate-limited");
        let quarantined_now = !throttled && self.record_health(&result);
        CallOutcome {
            result,
            logs,
            logs_dropped: data.log.dropped,
            host_calls,
            host_calls_refused,
            random_seed,
            elapsed: started.elapsed(),
            quarantined_now,
        }
    }

    /// Re-run `batch` with host calls answered from `tape` (a replay tape)
    /// and the recorded random seed. Touches no state and no clock, and
    /// does not count towards quarantine. Returns the result and the first
    /// divergence from the recorded host calls.
    pub fn replay(
        &self,
        batch: &Batch,
        tape: Tape,
        random_seed: [u8; 32],
    ) -> (Result<Vec<Finding>, CallError>, Option<String>) {
        let mut store = self.new_store_with(tape, random_seed);
        let result = self.call(&mut store, batch);
        let divergence = store.data().tape.divergence();
        (result, divergence)
    }

    /// Map a wasmtime error from a call into this store to a [`CallError`].
    fn classify(&self, store: &Store<CallState>, e: wasmtime::Error) -> CallError {
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

    /// Instantiate into `store` and run `init`; returns the instance and the
    /// compiled projection of the fields it declared (`None`: whole events).
    fn start(
        &self,
        store: &mut Store<CallState>,
    ) -> Result<(Detector, Option<Arc<Projection>>), CallError> {
        let PluginPre::Detector(pre) = &self.pre else {
            return Err(CallError::WrongWorld(self.pre.world(), "detector"));
        };
        let detector = pre
            .instantiate(&mut *store)
            .map_err(|e| match self.classify(store, e) {
                CallError::Trap(m) => CallError::Instantiate(m),
                other => other,
            })?;
        let info = detector
            .call_init(&mut *store, &self.template.config)
            .map_err(|e| self.classify(store, e))?
            .map_err(|e| CallError::Init(plugin_error_text(&e)))?;
        let projection = info
            .fields
            .map(|fields| self.compile_projection(fields))
            .transpose()?;
        Ok((detector, projection))
    }

    /// Project `batch` (into `scratch`, reused by warm instances), call
    /// `detect` and check the output.
    fn run_detect(
        &self,
        store: &mut Store<CallState>,
        detector: &Detector,
        projection: Option<&Projection>,
        batch: &Batch,
        scratch: &mut Batch,
    ) -> Result<Vec<Finding>, CallError> {
        let input = match projection {
            None => batch,
            Some(projection) => {
                batch.project_into(projection, scratch);
                &*scratch
            }
        };
        let findings = detector
            .call_detect(&mut *store, input.wire_buffer())
            .map_err(|e| self.classify(store, e))?
            .map_err(|e| CallError::Plugin(plugin_error_text(&e)))?;
        self.check_output(batch, findings)
    }

    fn call(&self, store: &mut Store<CallState>, batch: &Batch) -> Result<Vec<Finding>, CallError> {
        let (detector, projection) = self.start(store)?;
        let mut scratch = Batch::new();
        self.run_detect(store, &detector, projection.as_deref(), batch, &mut scratch)
    }

    /// Compile the declared field list, reusing the last one when unchanged.
    fn compile_projection(&self, fields: Vec<String>) -> Result<Arc<Projection>, CallError> {
        if fields.len() > MAX_FIELDS || fields.iter().any(|f| f.len() > MAX_FIELD_BYTES) {
            return Err(CallError::Init(format!(
                "declared {} event fields; at most {MAX_FIELDS} paths of at most {MAX_FIELD_BYTES} bytes are allowed",
                fields.len()
            )));
        }
        let mut cached = self.projection.lock().unwrap_or_else(|p| p.into_inner());
        Ok(match &*cached {
            Some((declared, projection)) if *declared == fields => projection.clone(),
            _ => {
                let projection = Arc::new(Projection::new(&fields));
                *cached = Some((fields, projection.clone()));
                projection
            }
        })
    }

    /// A live instance for repeated calls without re-instantiating: used by
    /// the benchmarks to measure per-event cost on a warm instance. The
    /// dispatcher does not use it: it gives every batch a fresh instance so
    /// nothing but recorded `state` carries between batches.
    pub fn warm_instance(&self) -> Result<WarmInstance<'_>, CallError> {
        let mut store = self.new_store_with(Tape::default(), fresh_seed());
        let (detector, projection) = self.start(&mut store)?;
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

    /// Guest-controlled output: enforce limits and event references.
    fn check_output(
        &self,
        batch: &Batch,
        findings: Vec<Finding>,
    ) -> Result<Vec<Finding>, CallError> {
        let max = self.limits.max_findings_per_batch;
        if findings.len() > max {
            return Err(CallError::TooManyFindings {
                count: findings.len(),
                max,
            });
        }
        for f in &findings {
            for (what, count, max) in [
                (
                    "evidence entries",
                    f.evidence.len(),
                    MAX_EVIDENCE_PER_FINDING,
                ),
                ("techniques", f.techniques.len(), MAX_TECHNIQUES),
            ] {
                if count > max {
                    return Err(CallError::TooManyEntries { what, count, max });
                }
            }
        }
        let bytes: usize = findings.iter().map(emitted_bytes).sum();
        if bytes > self.limits.max_output_bytes {
            return Err(CallError::OutputTooLarge {
                bytes,
                max: self.limits.max_output_bytes,
            });
        }
        // Batch ids are strictly increasing, so a binary search suffices.
        if let Some(bad) = findings.iter().find(|f| {
            batch
                .frames()
                .binary_search_by_key(&f.event_id, |e| e.id)
                .is_err()
        }) {
            return Err(CallError::UnknownEvent(bad.event_id));
        }
        Ok(findings)
    }

    /// Update the failure streak; returns whether the plugin was just quarantined.
    fn record_health<T>(&self, result: &Result<T, CallError>) -> bool {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(_) => {
                health.consecutive_failures = 0;
                false
            }
            Err(e) => {
                health.consecutive_failures += 1;
                if health.quarantine_reason.is_none()
                    && health.consecutive_failures >= self.limits.quarantine_after
                {
                    health.quarantine_reason = Some(format!(
                        "{} consecutive failed calls, the last one {e}",
                        health.consecutive_failures
                    ));
                    return true;
                }
                false
            }
        }
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
        self.plugin.run_detect(
            &mut self.store,
            &self.detector,
            self.projection.as_deref(),
            batch,
            &mut self.scratch,
        )
    }
}
