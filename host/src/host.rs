//! The host as a library: what `vigil run` (and, next, `vigil serve`) is
//! made of, so commands are short functions over it.
//!
//! A [`Host`] owns the engine and policy ([`Runtime`]), the audit writer,
//! the revocation watcher, the plugin state stores (through the runtime)
//! and the packs, whose current generations sit behind one atomic pointer
//! ([`PackSet`]). [`Host::run`] sends one event source through every
//! pack's current generation into one sink ([`Pipeline`]). A reload
//! (`control::reload`) loads beside the running generation, posts its
//! records on the host's [`NoticeBoard`] and swaps the set.
//!
//! Order of the audit log, kept from the single-run host it replaces:
//! `host-start`, every pack's load (or its refusal, which stops the host),
//! grant changes made while no host ran, then per run `run-start`, its
//! batches (and, in order with them, reloads' generation changes),
//! `run-end`, and `host-stop` when the host closes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::audit::record::Lifecycle;
use crate::audit::{self, AuditError, Auditor, resume};
use crate::load::pack::{Generation, LoadErrors, PackSet, PackSource};
use crate::load::policy::Policy;
use crate::load::runtime::Runtime;
use crate::pipeline::dispatch::{Pipeline, RunError, RunStats};
use crate::pipeline::notice::{Notice, NoticeBoard};
use crate::pipeline::observe::Observer;
use crate::pipeline::position::Position;
use crate::pipeline::record;
use crate::pipeline::sink::FindingSink;
use crate::pipeline::source::{DEFAULT_LINGER, EventSource};
use crate::revocation;
use crate::state::recovery::{self, Gated, RecoveryError};

/// Why the host could not start, load or run.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The engine could not be built or the revocation list not read.
    #[error("starting the host: {0:#}")]
    Start(wasmtime::Error),
    /// The audit log could not be opened or written.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A pack was refused (recorded in the audit log before this returns).
    #[error("pack refused:\n{0}")]
    PackRefused(LoadErrors),
    /// Two packs of one host share a name (findings, state and the audit
    /// log name a plugin by pack and id, so they must be unique).
    #[error("two packs are named `{0}`; rename one (`name` in its pack.toml)")]
    DuplicatePack(String),
    /// The revocation list could not be watched.
    #[error("watching {path}: {source}")]
    Watch {
        /// The revocation list.
        path: PathBuf,
        /// Why.
        source: notify::Error,
    },
    /// The audit log could not be read to find where to resume.
    #[error("reading the audit log {dir}: {source}")]
    Resume {
        /// The audit directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A run stopped early.
    #[error(transparent)]
    Run(#[from] RunError),
    /// Plugin state could not be brought forward from the audit log.
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
}

/// Where a host keeps its state and log, and what it is called in the log.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The operator policy.
    pub policy: Policy,
    /// Plugin state, the compile cache and the revocation list.
    pub state_dir: PathBuf,
    /// The audit log (default: the policy's, under `state_dir`).
    pub audit_dir: Option<PathBuf>,
    /// The command, as the `host-start` record names it.
    pub command: String,
}

/// A running host: runtime, audit log, revocation watcher and packs.
pub struct Host {
    runtime: Runtime,
    auditor: Auditor,
    packs: Arc<PackSet>,
    /// Where reloads post their records (see [`Host::notice_board`]).
    notices: Arc<NoticeBoard>,
    /// Set once someone holds the board: packs may change during a run.
    reloadable: bool,
    /// Told about every recorded batch and emitted finding.
    observer: Option<Arc<dyn Observer>>,
    revocations_file: PathBuf,
    /// Keeps the revocation list watched while the host lives: without it
    /// a run would go on with the grants it started with.
    _watcher: revocation::Watcher,
}

impl Host {
    /// Start a host over `packs`: open the audit log, load every pack and
    /// record it, bring detectors' state forward from the log (not a
    /// record: `state_recovery.rs`), and watch the revocation list. A refused pack is
    /// recorded, the log closed, and [`HostError::PackRefused`] returned.
    pub fn open(options: HostOptions, packs: &[PackSource]) -> Result<Host, HostError> {
        let mut runtime =
            Runtime::new(options.policy, options.state_dir).map_err(HostError::Start)?;
        let audit_dir =
            (options.audit_dir).unwrap_or_else(|| runtime.policy.audit_dir(&runtime.state_dir));
        let mut auditor = Auditor::open(&runtime.policy.audit, &audit_dir)?;
        runtime.keep_files_in(audit::files_store(auditor.dir()));
        auditor.lifecycle(Lifecycle::HostStart {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            command: options.command,
        })?;
        let mut generations: Vec<Arc<Generation>> = Vec::new();
        for source in packs {
            let generation = match runtime.load(source.clone()) {
                Ok(generation) => generation,
                Err(errors) => {
                    auditor.lifecycle(Lifecycle::PackRefused {
                        source: source.display(""),
                        reasons: errors.0.iter().map(ToString::to_string).collect(),
                    })?;
                    auditor.close("pack refused")?;
                    return Err(HostError::PackRefused(errors));
                }
            };
            let name = &generation.manifest.name;
            if generations.iter().any(|g| &g.manifest.name == name) {
                let name = name.clone();
                auditor.close("two packs of one name")?;
                return Err(HostError::DuplicatePack(name));
            }
            record::pack_load(&mut auditor, &generation)?;
            generations.push(generation);
        }
        bring_state_forward(&auditor, &runtime.policy, &generations)?;
        let revocations_file = runtime.state_dir.join(revocation::FILE);
        let watcher = revocation::watch(&revocations_file, runtime.revocations.clone()).map_err(
            |source| HostError::Watch {
                path: revocations_file.clone(),
                source,
            },
        )?;
        // Whatever changed between start-up and the watch.
        runtime.revocations.reload(&revocations_file);
        // Grant changes made while no host ran and not recorded yet; from
        // here on this host records its state dir's grant changes
        // (`revocation.rs`).
        runtime.revocations.record(&mut auditor)?;
        Ok(Host {
            runtime,
            auditor,
            packs: Arc::new(PackSet::new(generations)),
            notices: Arc::default(),
            reloadable: false,
            observer: None,
            revocations_file,
            _watcher: watcher,
        })
    }

    /// The engine, policy and state stores.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The packs, each with its current generation.
    pub fn packs(&self) -> &Arc<PackSet> {
        &self.packs
    }

    /// Where a reload posts its records (`pipeline::notice`): in order with
    /// the batches of a run, or written before the next run or at close.
    /// A host whose board is taken may see its packs change during a run.
    pub fn notice_board(&mut self) -> Arc<NoticeBoard> {
        self.reloadable = true;
        self.notices.clone()
    }

    /// Tell `observer` about every batch recorded and finding emitted.
    pub fn observe(&mut self, observer: Arc<dyn Observer>) {
        self.observer = Some(observer);
    }

    /// Write the notices posted while no run was attached. Generations
    /// loaded that way (a service's packs at start) have had no call yet:
    /// their detectors' state is brought forward from the log first, as
    /// [`Host::open`] does for its packs.
    fn write_pending_notices(&mut self) -> Result<(), HostError> {
        let mut loaded = Vec::new();
        for notice in self.notices.take_pending() {
            if let Notice::Generation { generation, .. } = &notice {
                loaded.push(generation.clone());
            }
            record::notice(&mut self.auditor, notice)?;
        }
        bring_state_forward(&self.auditor, &self.runtime.policy, &loaded)?;
        Ok(())
    }

    /// The audit log's directory.
    pub fn audit_dir(&self) -> &Path {
        self.auditor.dir()
    }

    /// Where an interrupted run over the source named `name` stopped, if
    /// the last run over it did not finish (from the audit log).
    pub fn resume_position(&self, name: &str) -> Result<Option<Position>, HostError> {
        let dir = self.auditor.dir();
        resume::interrupted_position(dir, name).map_err(|source| HostError::Resume {
            dir: dir.to_owned(),
            source,
        })
    }

    /// Run every event of `source` through every pack, findings to `sink`,
    /// recorded in the audit log between `run-start` and `run-end`.
    /// `resumed_from` is where an interrupted run over it stopped (the
    /// source already starts there).
    pub fn run(
        &mut self,
        source: &mut dyn EventSource,
        sink: &mut dyn FindingSink,
        resumed_from: Option<Position>,
        batch_size: usize,
    ) -> Result<RunStats, HostError> {
        let name = source.name().to_owned();
        self.write_pending_notices()?;
        self.auditor.lifecycle(Lifecycle::RunStart {
            source: name.clone(),
            from: resumed_from.unwrap_or_default(),
            resumed: resumed_from.is_some(),
        })?;
        let policy = &self.runtime.policy;
        let stats = Pipeline {
            packs: &self.packs,
            notices: self.reloadable.then_some(&*self.notices),
            observer: self.observer.as_deref(),
            audit: Some(&mut self.auditor),
            revocations: self.runtime.revocations.clone(),
            batch_size,
            linger: (policy.batch_linger_ms).map_or(DEFAULT_LINGER, Duration::from_millis),
            enrichment: policy.enrichment.clone(),
        }
        .run(source, sink)?;
        self.write_pending_notices()?;
        // Changes made since the audit stage last looked.
        self.runtime.revocations.reload(&self.revocations_file);
        self.runtime.revocations.record(&mut self.auditor)?;
        self.auditor.lifecycle(Lifecycle::RunEnd {
            source: name,
            at: stats.end,
            events: stats.events,
            findings: stats.findings,
            errors: stats.malformed + stats.failed_calls,
        })?;
        Ok(stats)
    }

    /// Stop: a final `host-stop` record saying why, the log synced and
    /// closed.
    pub fn close(mut self, reason: &str) -> Result<(), HostError> {
        self.write_pending_notices()?;
        Ok(self.auditor.close(reason)?)
    }
}

/// Detectors' state the log holds and their stores lack (a host killed
/// between the two), applied before any of `generations` is called
/// (`state/recovery.rs`).
fn bring_state_forward(
    auditor: &Auditor,
    policy: &Policy,
    generations: &[Arc<Generation>],
) -> Result<(), HostError> {
    let gated: Vec<Gated<'_>> = (generations.iter())
        .flat_map(|g| &g.detectors)
        .filter_map(|p| {
            Some(Gated {
                pack: &p.pack,
                plugin: &p.id,
                store: p.state_store()?,
            })
        })
        .collect();
    if gated.is_empty() {
        return Ok(());
    }
    let redact = &policy.audit.redact;
    let redacting = !(redact.drop.is_empty() && redact.hash.is_empty());
    recovery::bring_forward(auditor, redacting, &gated)?;
    Ok(())
}
