//! The run loop ([`Pipeline`]): read batches from a source, call every
//! detector of every pack's current generation on each, record the batch
//! in the audit log, then commit the detectors' state writes, emit the
//! findings to a sink in event order within a batch (a finding that goes
//! to enrichment leaves when its enrichments are back or its wait is over,
//! so it may follow later batches' findings) and acknowledge the source.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use vigil_event::Batch;

use super::enrich::{self, Enriched};
use super::host_log::{forward_logs, log_quarantine_changes};
use super::input::{BatchReader, MalformedLine, RawEvents};
use super::notice::{Notice, NoticeBoard};
use super::observe::{BatchSeen, Observer};
use super::position::Position;
use super::record::{self, PluginCall};
use super::sink::{FindingSink, JsonLines};
use super::source::{Acknowledge, DEFAULT_LINGER, EventSource, Lines};
use crate::audit::redact::Scrub;
use crate::audit::{AuditError, Auditor, BatchUnit};
use crate::capability::tape::{CallStatus, HostCall};
use crate::finding::{EnrichmentRecord, EnrichmentResult, FindingRecord};
use crate::load::pack::{Generation, PackSet};
use crate::load::policy::EnrichmentConfig;
use crate::plugin_text::{self, PluginText};
use crate::revocation::Revocations;
use crate::run::plugin::{
    Admission, CallError, CallOutcome, Detect, LoadedPlugin, QuarantineChange, Ticket,
};
use crate::state::recovery::log_id;
use crate::state::store::Applied;

/// Counters of one run, printed as the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Events read and dispatched.
    pub events: u64,
    /// Where reading stopped.
    pub end: Position,
    /// Lines that were not events.
    pub malformed: u64,
    /// Findings written.
    pub findings: u64,
    /// Plugin calls that failed (trap, deadline, error, bad output).
    pub failed_calls: u64,
    /// Findings emitted with at least one enrichment.
    pub enriched: u64,
    /// Findings emitted without any (each enricher's reason attached).
    pub unenriched: u64,
    /// Plugins quarantined during the run (`pack/plugin: reason`, the
    /// latest quarantine of each; a lifted one stays listed).
    pub quarantined: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
    /// Wall time until every event was read and through the detectors
    /// (the rest of `elapsed` is findings waiting for their enrichments
    /// and the audit stage finishing).
    pub detection: Duration,
}

impl RunStats {
    /// The one-line summary printed on stderr.
    pub fn summary(&self) -> String {
        let enrichment = if self.enriched + self.unenriched > 0 {
            format!(
                " ({} enriched, {} not enriched)",
                self.enriched, self.unenriched
            )
        } else {
            String::new()
        };
        format!(
            "vigil: {} events read, {} findings{enrichment}, {} errors ({} malformed lines, {} failed plugin calls), {} quarantined, {:.3} s",
            self.events,
            self.findings,
            self.malformed + self.failed_calls,
            self.malformed,
            self.failed_calls,
            self.quarantined.len(),
            self.elapsed.as_secs_f64()
        )
    }
}

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Reading events failed.
    #[error("reading events from {source_name}: {error}")]
    Input {
        /// The input name.
        source_name: String,
        /// The I/O error.
        error: io::Error,
    },
    /// Writing findings failed.
    #[error("writing findings: {0}")]
    Output(io::Error),
    /// The audit log could not be written: the run stops before emitting
    /// the batch's findings (fail closed).
    #[error(
        "{error}; stopped before emitting the findings of {source_name} lines {first}-{last} \
         (nothing from them was emitted; {})",
        resume_hint(source_name, *first)
    )]
    Audit {
        /// What failed.
        error: AuditError,
        /// The input name.
        source_name: String,
        /// First line of the batch that was not emitted.
        first: u64,
        /// Last line of that batch.
        last: u64,
    },
    /// A finding's enrichments could not be recorded: the run stops before
    /// emitting it. Its batch is recorded already, so a resumed run does
    /// not bring it back; the detection itself is in the audit log.
    #[error(
        "{error}; stopped before emitting the enriched finding of {source_name} line {line} \
         (its detection is in the audit log; a resumed run starts after its batch and does \
         not emit it again)"
    )]
    AuditEnrichment {
        /// What failed.
        error: AuditError,
        /// The input name.
        source_name: String,
        /// The finding's line.
        line: u64,
    },
    /// A revocation or restoration could not be recorded in the audit log:
    /// the run stops, as for [`RunError::Audit`], since calls after it would
    /// run under a grant change the log does not show. (The change stays
    /// pending in the revocation list; the next recorder writes it.)
    #[error(
        "{error}; stopped while recording a grant change (findings not yet recorded were not \
         emitted; a resumed run continues after the last recorded batch)"
    )]
    AuditGrantChange {
        /// What failed.
        error: AuditError,
    },
    /// A reload's record (a new generation, a refused reload) could not be
    /// written: the run stops, since batches after it would run on a
    /// generation the log does not show.
    #[error(
        "{error}; stopped while recording a pack reload (findings not yet recorded were not \
         emitted; a resumed run continues after the last recorded batch)"
    )]
    AuditNotice {
        /// What failed.
        error: AuditError,
    },
}

/// What happens to the lines a stopped run did not emit.
fn resume_hint(source_name: &str, first: u64) -> String {
    if source_name == "-" {
        format!("standard input is never resumed: send lines {first} onwards again")
    } else {
        format!("a resumed run starts at line {first}")
    }
}

/// Run every event of `input` (named `source` in output) through the
/// generation's detectors, writing findings to `out` as JSON Lines.
/// Without an audit log: used by tests and benchmarks.
pub fn run(
    generation: &Arc<Generation>,
    input: impl BufRead,
    source: &str,
    batch_size: usize,
    out: &mut (impl Write + Send),
) -> Result<RunStats, RunError> {
    run_audited(
        generation,
        BatchReader::new(input),
        source,
        batch_size,
        out,
        None,
    )
}

/// [`run`] reading through `reader` (which may start mid-file), recording
/// every batch unit in `audit` before its findings are written: one pack,
/// a reader and a writer, for tests and benchmarks. See [`Pipeline`].
pub fn run_audited<R: BufRead, W: Write + Send>(
    generation: &Arc<Generation>,
    reader: BatchReader<R>,
    source: &str,
    batch_size: usize,
    out: &mut W,
    audit: Option<&mut Auditor>,
) -> Result<RunStats, RunError> {
    let mut source = Lines::at(source, reader);
    run_one(
        generation,
        &mut source,
        &mut JsonLines::new(out),
        batch_size,
        audit,
    )
}

/// A [`Pipeline`] over the one pack `generation`, which no reload swaps:
/// `vigil test`, tests and benchmarks.
pub fn run_one(
    generation: &Arc<Generation>,
    source: &mut dyn EventSource,
    sink: &mut dyn FindingSink,
    batch_size: usize,
    audit: Option<&mut Auditor>,
) -> Result<RunStats, RunError> {
    let packs = PackSet::new(vec![generation.clone()]);
    let pipeline = Pipeline {
        packs: &packs,
        notices: None,
        observer: None,
        audit,
        revocations: generation.revocations.clone(),
        batch_size,
        linger: DEFAULT_LINGER,
        enrichment: generation.enrichment.clone(),
    };
    pipeline.run(source, sink)
}

/// The next batch's number, unique in the process: a store's sealed
/// writes are committed in this order, across runs and generations.
fn next_epoch() -> u64 {
    static EPOCHS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    EPOCHS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
}

/// How many dispatched batches may wait for the audit-and-emit stage. Two
/// keep both cores busy (one detecting, one hashing and writing) without
/// holding much in memory.
const PIPELINE_DEPTH: usize = 2;

/// What the audit-and-emit stage receives from the dispatcher (and the
/// enrichment workers' wake-ups).
///
/// Finished enrichments travel on a channel of their own: on this one they
/// took the dispatcher's two slots, so every enrichment result made
/// detection wait for the audit stage (measured: detection alone at 0.55x
/// with an enricher against a 3 ms service). Their channel needs no bound
/// of its own: each result answers one queued job, so at most `queue +
/// workers` are ever in it.
enum Message {
    /// A batch and its detector calls, from the dispatcher.
    Batch(Dispatched),
    /// Enrichment results are waiting (sent only when there is room, so a
    /// worker never blocks: a busy emitter drains them after each message).
    EnrichmentReady,
    /// A record from outside the run (a reload), in order with batches.
    Notice(Box<Notice>),
    /// The dispatcher has read everything.
    DispatchDone,
}

/// One dispatched batch on its way to the audit-and-emit stage.
struct Dispatched {
    start: Position,
    end: Position,
    raw: RawEvents,
    malformed: Vec<MalformedLine>,
    /// The batch's number in this run: its detectors' state writes are
    /// sealed under it and committed once its unit is in the log.
    epoch: u64,
    /// The generation of each pack this batch ran on: the emitter sends
    /// its findings to those generations' enrichers, even if a pack was
    /// reloaded meanwhile.
    generations: Arc<Vec<Arc<Generation>>>,
    calls: Vec<PluginCall>,
}

/// One run of events from a source through the current generation of
/// every pack, findings to a sink.
///
/// Stages on their own threads: the caller's thread reads and calls the
/// detectors; the audit-and-emit stage writes each batch unit to the audit
/// log and only then emits its findings (write-ahead) and acknowledges the
/// batch to the source, so auditing overlaps the next batch's detection
/// instead of adding to it. When a pack has enrichers, findings go from
/// there to a pool of enrichment workers (`enrich.rs`) and come back to be
/// recorded and emitted; a slow enrichment service holds up only the
/// findings waiting for it, never detection. If the log cannot be written,
/// the audit stage stops, nothing more is emitted, and the run returns
/// [`RunError::Audit`].
///
/// Each batch takes every pack's current generation when it is read
/// ([`PackSet::current`]) and keeps it to the end, enrichment included: a
/// reload swaps the set and the next batch runs on the new generation.
pub struct Pipeline<'a> {
    /// The packs, each with its current generation. Pack names are
    /// distinct (the host refuses a second pack of the same name).
    pub packs: &'a PackSet,
    /// Where reloads post their records while this run goes on. With a
    /// board, packs may change during the run, so the enrichment workers
    /// start even if no current pack has an enricher.
    pub notices: Option<&'a NoticeBoard>,
    /// Told about every recorded batch and emitted finding (metrics).
    pub observer: Option<&'a dyn Observer>,
    /// Where batch units, enrichments and grant changes are recorded.
    pub audit: Option<&'a mut Auditor>,
    /// The revocations whose changes the audit stage records.
    pub revocations: Arc<Revocations>,
    /// Most events per batch.
    pub batch_size: usize,
    /// How long a live source's batch waits for more events.
    pub linger: Duration,
    /// The operator's `[enrichment]`.
    pub enrichment: EnrichmentConfig,
}

impl Pipeline<'_> {
    /// Run every event of `source` through the packs, findings to `sink`.
    pub fn run(
        self,
        source: &mut dyn EventSource,
        sink: &mut dyn FindingSink,
    ) -> Result<RunStats, RunError> {
        let started = Instant::now();
        let Pipeline {
            packs,
            notices,
            observer,
            audit,
            revocations,
            batch_size,
            linger,
            enrichment,
        } = self;
        let name = source.name().to_owned();
        let mut batch = Batch::new();
        let (stats, detection) = std::thread::scope(|scope| {
            let (to_emitter, inbox) = mpsc::sync_channel::<Message>(PIPELINE_DEPTH);
            let (enriched_tx, enriched) = mpsc::channel::<Enriched>();
            let any_enrichers = packs.current().iter().any(|g| !g.enrichers.is_empty());
            let pool = (any_enrichers || notices.is_some()).then(|| {
                let to_emitter = to_emitter.clone();
                enrich::start(scope, &enrichment, move |done| {
                    let delivered = enriched_tx.send(done).is_ok();
                    // Full: the emitter is busy and drains after each message.
                    let _ = to_emitter.try_send(Message::EnrichmentReady);
                    delivered
                })
            });
            // Emitted batches' line buffers come back for reuse.
            let (recycle, recycled) = mpsc::channel::<RawEvents>();
            // Told on the audit stage's thread, as each batch is durable.
            let acked = source.acknowledger();
            if let Some(board) = notices {
                let inbox = to_emitter.clone();
                board.attach(Box::new(move |notice| {
                    inbox.send(Message::Notice(notice)).map_err(|e| match e.0 {
                        Message::Notice(notice) => notice,
                        _ => unreachable!("only notices are sent here"),
                    })
                }));
            }
            // Named, so profiles and `top -H` tell the audit stage apart.
            let emitter = std::thread::Builder::new().name("vigil-audit".into());
            let emitter = emitter.spawn_scoped(scope, {
                let name = name.as_str();
                let enrichment = &enrichment;
                move || {
                    Emitter {
                        log_id: audit.as_deref().map_or_else(String::new, log_id),
                        source: name,
                        sink,
                        audit,
                        revocations,
                        enrichment,
                        observer,
                        notices,
                        pool,
                        waiting: BTreeMap::new(),
                        next_token: 0,
                        recycle,
                        acked,
                        stats: RunStats::default(),
                    }
                    .run(inbox, enriched)
                }
            });
            let emitter = emitter.expect("spawning the audit stage thread");
            let read = loop {
                let start = source.position();
                let mut malformed = Vec::new();
                match source.fill(&mut batch, batch_size, linger, &mut malformed) {
                    Err(error) => {
                        break Err(RunError::Input {
                            source_name: name.clone(),
                            error,
                        });
                    }
                    Ok(false) => break Ok(()),
                    Ok(_) => {}
                }
                for m in &malformed {
                    tracing::warn!("{name}:{}: skipped malformed event: {}", m.line, m.reason);
                }
                // This batch's generations, whatever reloads happen while
                // it is in flight.
                let generations = packs.current();
                let mut calls = Vec::new();
                let epoch = next_epoch();
                if !batch.is_empty() {
                    for plugin in generations.iter().flat_map(|g| &g.detectors) {
                        // Its state writes wait for the batch's unit to be
                        // in the log (`state_store.rs`, gated stores):
                        // gated before the call, whose own flush would
                        // otherwise commit them.
                        let store = plugin.state_store();
                        if let Some(store) = store {
                            store.gate();
                        }
                        // A quarantined detector is not given the batch.
                        if let Admission::Call(ticket) = plugin.admit() {
                            calls.push(call_plugin(plugin, ticket, &batch, &name));
                        }
                        if let Some(store) = store {
                            store.seal(epoch);
                        }
                    }
                }
                let unit = Dispatched {
                    start,
                    end: source.position(),
                    raw: source.take_raw(recycled.try_recv().unwrap_or_default()),
                    malformed,
                    epoch,
                    generations,
                    calls,
                };
                // A closed channel means the emitter stopped on an error,
                // which `join` returns below.
                if to_emitter.send(Message::Batch(unit)).is_err() {
                    break Ok(());
                }
            };
            // Notices from here on wait on the board for the host to write
            // (one being delivered now is in the inbox before the end).
            if let Some(board) = notices {
                board.detach();
            }
            // Ignored when the emitter already stopped on an error.
            let _ = to_emitter.send(Message::DispatchDone);
            let detection = started.elapsed();
            drop(to_emitter);
            let emitted = emitter.join().expect("the emit stage does not panic");
            // A run stopped early leaves writes of batches the log does not
            // hold: a later run must neither read nor commit them. The
            // rest is committed now rather than at the next group commit.
            for plugin in packs.current().iter().flat_map(|g| &g.detectors) {
                if let Some(store) = plugin.state_store() {
                    store.discard_unlogged();
                    // What the log holds, committed and durable as the run ends.
                    if let Err(e) = store.sync() {
                        tracing::error!(plugin = %plugin.label(), error = %e, "plugin state could not be saved");
                    }
                }
            }
            read.and(emitted).map(|stats| (stats, detection))
        })?;
        let mut stats = stats;
        stats.end = source.position();
        stats.detection = detection;
        stats.elapsed = started.elapsed();
        Ok(stats)
    }
}

/// The audit-and-emit stage: the only writer of the audit log and the
/// sink during a run.
struct Emitter<'r> {
    /// The audit log, as plugin state stores name it (empty without one).
    log_id: String,
    source: &'r str,
    sink: &'r mut dyn FindingSink,
    audit: Option<&'r mut Auditor>,
    revocations: Arc<Revocations>,
    enrichment: &'r EnrichmentConfig,
    observer: Option<&'r dyn Observer>,
    /// Notices sinks posted from this thread (`NoticeBoard::post_deferred`).
    notices: Option<&'r NoticeBoard>,
    pool: Option<enrich::Pool>,
    /// Findings out for enrichment and not emitted yet, by token: each
    /// leaves by its `due` time, enriched or not.
    waiting: BTreeMap<u64, Waiting>,
    next_token: u64,
    recycle: mpsc::Sender<RawEvents>,
    acked: Box<dyn Acknowledge>,
    stats: RunStats,
}

/// A finding waiting for its enrichments.
struct Waiting {
    due: Instant,
    /// The generation whose enrichers it waits for.
    generation: Arc<Generation>,
    /// What is emitted if the enrichments are late.
    finding: FindingRecord,
}

impl Emitter<'_> {
    /// Handle messages until the dispatcher is done and every finding sent
    /// to enrichment has come back.
    fn run(
        mut self,
        inbox: mpsc::Receiver<Message>,
        enriched: mpsc::Receiver<Enriched>,
    ) -> Result<RunStats, RunError> {
        // Changes made while no host ran, before anything of this run.
        self.record_grant_changes()?;
        let mut dispatch_done = false;
        let mut outstanding = 0usize;
        while !(dispatch_done && outstanding == 0) {
            // Wake for the next message or the next finding that is due.
            // Every finding waits the same `wait_ms`, so the first token
            // is the first due.
            let next_due = self.waiting.first_key_value().map(|(_, w)| w.due);
            let message = match next_due {
                None => inbox
                    .recv()
                    .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                Some(due) => inbox.recv_timeout(due.saturating_duration_since(Instant::now())),
            };
            // On every turn, not only on a timeout: under load the inbox is
            // never empty, and overdue findings must still leave on time.
            self.emit_overdue()?;
            let message = match message {
                Ok(message) => message,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            self.record_grant_changes()?;
            match message {
                Message::Batch(unit) => outstanding += self.batch(unit)?,
                Message::EnrichmentReady => {}
                Message::Notice(notice) => self.notice(*notice)?,
                Message::DispatchDone => dispatch_done = true,
            }
            while let Ok(done) = enriched.try_recv() {
                outstanding -= 1;
                self.enriched(done)?;
            }
            // What a sink posted while this message was handled.
            if let Some(board) = self.notices {
                for notice in board.take_pending() {
                    self.notice(notice)?;
                }
            }
        }
        self.record_grant_changes()?;
        Ok(self.stats)
    }

    /// Emit every finding whose wait for enrichment is over, without the
    /// enrichments; they are still recorded in the log when they arrive.
    fn emit_overdue(&mut self) -> Result<(), RunError> {
        let now = Instant::now();
        // Tokens are in due order: the overdue ones come first.
        let overdue: Vec<u64> = (self.waiting.iter())
            .take_while(|(_, w)| w.due <= now)
            .map(|(token, _)| *token)
            .collect();
        for token in overdue {
            let Some(Waiting {
                mut finding,
                generation,
                ..
            }) = self.waiting.remove(&token)
            else {
                continue;
            };
            let reason = format!(
                "enrichment did not finish within {} ms (`[enrichment] wait_ms`); \
                 emitted without it, the enrichment is recorded in the audit log when it ends",
                self.enrichment.wait().as_millis()
            );
            finding.enrichments = unavailable_everywhere(&generation, &reason);
            self.stats.unenriched += 1;
            self.write_finding(&finding)?;
        }
        self.sink.flush().map_err(RunError::Output)
    }

    /// Revocations and restorations made since the last record (when this
    /// host records its state dir's grant changes), so they precede the
    /// calls they affect in the log.
    fn record_grant_changes(&mut self) -> Result<(), RunError> {
        match self.audit.as_deref_mut() {
            Some(audit) => (self.revocations)
                .record(audit)
                .map_err(|error| RunError::AuditGrantChange { error }),
            None => Ok(()),
        }
    }

    /// Record a notice from outside the run (without an audit log there is
    /// nothing to record).
    fn notice(&mut self, notice: Notice) -> Result<(), RunError> {
        match self.audit.as_deref_mut() {
            Some(audit) => {
                record::notice(audit, notice).map_err(|error| RunError::AuditNotice { error })
            }
            None => Ok(()),
        }
    }

    /// Count a quarantine in the run's summary.
    fn note_quarantine<T>(&mut self, plugin: &LoadedPlugin, outcome: &CallOutcome<T>) {
        if let Some(QuarantineChange::Quarantined { reason, .. }) = &outcome.after {
            let label = plugin.label();
            let prefix = format!("{label}: ");
            self.stats.quarantined.retain(|q| !q.starts_with(&prefix));
            self.stats.quarantined.push(format!("{prefix}{reason}"));
        }
    }

    /// Record a batch unit, then emit its findings or hand them to
    /// enrichment. Returns how many went to enrichment.
    fn batch(&mut self, unit: Dispatched) -> Result<usize, RunError> {
        let source = self.source;
        let written = Instant::now();
        let (batch_seq, scrub) = match self.audit.as_deref_mut() {
            Some(audit) => {
                let raw = unit.raw.events();
                let batch_unit = BatchUnit {
                    source,
                    start: unit.start,
                    end: unit.end,
                    events: &raw,
                    malformed: record::malformed_records(&unit.malformed),
                    calls: unit.calls.iter().map(PluginCall::records).collect(),
                };
                // Write-ahead: nothing of this batch is emitted or counted
                // unless its unit is in the log.
                audit
                    .batch_unit(batch_unit)
                    .map_err(|error| RunError::Audit {
                        error,
                        source_name: source.to_owned(),
                        first: unit.start.line + 1,
                        last: unit.end.line,
                    })?
            }
            None => (0, Scrub::default()),
        };
        let audit_write = written.elapsed();
        self.commit_state(&unit, batch_seq);
        if let Some(observer) = self.observer {
            observer.batch(&BatchSeen {
                events: unit.raw.len() as u64,
                malformed: unit.malformed.len() as u64,
                calls: &unit.calls,
                audit_write,
            });
        }
        self.stats.malformed += unit.malformed.len() as u64;
        self.stats.events += unit.raw.len() as u64;
        let mut records = Vec::new();
        for call in unit.calls {
            if call.outcome.result.is_err() {
                self.stats.failed_calls += 1;
            }
            self.note_quarantine(&call.plugin, &call.outcome);
            records.extend(call.findings);
        }
        // Stable: findings of one event keep plugin order.
        records.sort_by_key(|r| r.event.line);
        let mut sent = 0;
        let scrub = Arc::new(scrub);
        for mut record in records {
            let generation = (unit.generations.iter())
                .find(|g| g.manifest.name == record.pack)
                .expect("a finding comes from a pack of its batch");
            if let Some(pool) = self
                .pool
                .as_ref()
                .filter(|_| !generation.enrichers.is_empty())
            {
                let token = self.next_token;
                let due = Instant::now() + self.enrichment.wait();
                let job = enrich::Job {
                    token,
                    due,
                    batch: batch_seq,
                    scrub: scrub.clone(),
                    generation: generation.clone(),
                    finding: record.clone(),
                };
                if pool.submit(job) {
                    self.next_token += 1;
                    let waiting = Waiting {
                        due,
                        generation: generation.clone(),
                        finding: record,
                    };
                    self.waiting.insert(token, waiting);
                    sent += 1;
                    continue;
                }
                // Never drop a finding: past the queue bound it leaves
                // un-enriched, saying why.
                let reason = format!(
                    "enrichment queue full ({} findings waiting; `[enrichment] queue`)",
                    self.enrichment.queue()
                );
                record.enrichments = unavailable_everywhere(generation, &reason);
                self.stats.unenriched += 1;
            }
            self.write_finding(&record)?;
        }
        self.sink.flush().map_err(RunError::Output)?;
        // Durable in the log and emitted (or waiting for enrichment, which
        // is recorded on its own): the source may commit past it.
        self.acked.ack(unit.end);
        // The dispatcher may have finished already; then the buffer just drops.
        let _ = self.recycle.send(unit.raw);
        Ok(sent)
    }

    /// The batch's unit is in the log: its detectors' state writes may
    /// reach their stores. A store that fails keeps them and retries with
    /// the run's next batch; the log holds them either way, and the next
    /// host brings what a store lacks forward when it starts
    /// (`state_recovery.rs`).
    fn commit_state(&self, unit: &Dispatched, batch_seq: u64) {
        let applied = Applied {
            log: self.log_id.clone(),
            seq: batch_seq,
        };
        for plugin in unit.generations.iter().flat_map(|g| &g.detectors) {
            if let Some(store) = plugin.state_store()
                && let Err(e) = store.commit_through(unit.epoch, &applied)
            {
                tracing::error!(plugin = %plugin.label(), error = %e, "plugin state could not be saved");
            }
        }
    }

    /// Record a finding's enrichments, then emit it with them attached
    /// (unless it already left without them).
    fn enriched(&mut self, done: Enriched) -> Result<(), RunError> {
        if let Some(audit) = self.audit.as_deref_mut() {
            audit
                .enrichments(
                    done.batch,
                    &done.scrub,
                    record::enrichment_records(&done.finding, &done.calls),
                )
                .map_err(|error| RunError::AuditEnrichment {
                    error,
                    source_name: self.source.to_owned(),
                    line: done.finding.event.line,
                })?;
        }
        // Gone from `waiting`: it left without them when its wait was over.
        let still_waiting = self.waiting.remove(&done.token).is_some();
        let mut finding = done.finding;
        for (plugin, outcome) in done.calls {
            self.note_quarantine(&plugin, &outcome);
            let result = match outcome.result {
                Ok(enrichment) => EnrichmentResult::enriched(enrichment),
                Err(e) => {
                    self.stats.failed_calls += 1;
                    EnrichmentResult::Unavailable {
                        reason: unavailable_reason(&e, &outcome.host_calls),
                    }
                }
            };
            finding.enrichments.push(EnrichmentRecord {
                plugin: plugin.label(),
                result,
            });
        }
        finding.enrichments.extend(done.skipped);
        if !still_waiting {
            return Ok(());
        }
        if (finding.enrichments.iter())
            .any(|e| matches!(e.result, EnrichmentResult::Enriched { .. }))
        {
            self.stats.enriched += 1;
        } else {
            self.stats.unenriched += 1;
        }
        self.write_finding(&finding)?;
        self.sink.flush().map_err(RunError::Output)
    }

    fn write_finding(&mut self, record: &FindingRecord) -> Result<(), RunError> {
        self.sink.emit(record).map_err(RunError::Output)?;
        if let Some(observer) = self.observer {
            observer.finding(record);
        }
        self.stats.findings += 1;
        Ok(())
    }
}

/// Most bytes of an `unavailable` reason.
pub(crate) const MAX_REASON_BYTES: usize = 1024;

/// The `unavailable` reason of a failed enricher call: the call's error,
/// then, if the host refused one of its http requests (denied or
/// rate-limited), the rule that refused it, as the audit log's `detail`
/// has it. The guest only gets `access-denied` or `rate-limited` and so
/// cannot say which origin, method, revocation or `Retry-After` it was; the
/// host can. One line (control characters become spaces), at most
/// [`MAX_REASON_BYTES`].
pub(crate) fn unavailable_reason(error: &CallError, host_calls: &[HostCall]) -> String {
    let refused = host_calls.iter().rev().find(|c| {
        c.interface == "http"
            && (c.status == CallStatus::Denied || c.result["error"] == "rate-limited")
    });
    let mut reason = error.to_string();
    if let Some(detail) = refused.and_then(|c| c.detail.as_deref()) {
        reason.push_str(" — host: ");
        reason.push_str(detail);
    }
    let reason = reason.replace(|c: char| c.is_control(), " ");
    // Room for the note `clamp` appends.
    plugin_text::clamp(reason, MAX_REASON_BYTES - 48)
}

/// The same reason for every enricher of the generation.
fn unavailable_everywhere(generation: &Generation, reason: &str) -> Vec<EnrichmentRecord> {
    (generation.enrichers.iter())
        .map(|p| EnrichmentRecord {
            plugin: p.label(),
            result: EnrichmentResult::Unavailable {
                reason: reason.to_owned(),
            },
        })
        .collect()
}

/// Call one plugin on `batch` and report what it did to the host log.
fn call_plugin(
    plugin: &Arc<LoadedPlugin>,
    ticket: Ticket,
    batch: &Batch,
    source: &str,
) -> PluginCall {
    let mut outcome = plugin.call::<Detect>(ticket, batch);
    let label = plugin.label();
    forward_logs(plugin, &outcome);
    let findings = match &mut outcome.result {
        Ok(findings) => std::mem::take(findings)
            .into_iter()
            .map(|f| FindingRecord::new(&plugin.pack, &plugin.id, source, f))
            .collect(),
        Err(e) => {
            let (first, last) = (
                batch.frames().first().map_or(0, |f| f.id),
                batch.frames().last().map_or(0, |f| f.id),
            );
            tracing::error!(
                "plugin {label} {} (batch of {source} lines {first}-{last}); continuing with a fresh instance",
                PluginText(&e.to_string())
            );
            Vec::new()
        }
    };
    log_quarantine_changes(plugin, &outcome);
    PluginCall {
        plugin: plugin.clone(),
        outcome,
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit_failure(source_name: &str) -> String {
        RunError::Audit {
            error: AuditError::Io {
                path: "/log/00000002.jsonl".into(),
                action: "writing records",
                source: io::Error::other("disk full"),
            },
            source_name: source_name.to_owned(),
            first: 257,
            last: 512,
        }
        .to_string()
    }

    fn http_call(status: CallStatus, error: &str, detail: &str) -> HostCall {
        HostCall {
            interface: "http".into(),
            function: "send".into(),
            args: serde_json::json!({}),
            status,
            result: serde_json::json!({ "error": error }),
            detail: Some(detail.into()),
        }
    }

    #[test]
    fn an_unavailable_reason_names_the_rule_that_refused_an_http_request() {
        let error = CallError::Plugin("internal error: http access denied".into());
        let denied = http_call(
            CallStatus::Denied,
            "access-denied",
            "redirect from http://a.example/ to http://evil.example/: origin http://evil.example is not granted",
        );
        assert_eq!(
            unavailable_reason(&error, std::slice::from_ref(&denied)),
            "returned an error: internal error: http access denied — host: redirect from \
             http://a.example/ to http://evil.example/: origin http://evil.example is not granted"
        );
        let limited = http_call(
            CallStatus::Failed,
            "rate-limited",
            "rate-limited by the service until 2027-01-15T08:00:30Z (Retry-After of 30 s)",
        );
        let reason = unavailable_reason(&error, &[denied, limited]);
        assert!(
            reason.ends_with("— host: rate-limited by the service until 2027-01-15T08:00:30Z (Retry-After of 30 s)"),
            "the last refusal: {reason}"
        );
        // Other failures (a timeout) and other capabilities add nothing.
        let timeout = http_call(CallStatus::Failed, "timeout", "no response within 1s");
        let mut state = http_call(CallStatus::Denied, "access-denied", "key not granted");
        state.interface = "state".into();
        assert_eq!(
            unavailable_reason(&error, &[timeout, state]),
            "returned an error: internal error: http access denied"
        );
    }

    #[test]
    fn an_unavailable_reason_with_an_http_detail_is_one_bounded_line() {
        let error = CallError::Plugin(format!("line one\nline two {}", "x".repeat(5000)));
        let denied = http_call(CallStatus::Denied, "access-denied", "not granted");
        let reason = unavailable_reason(&error, &[denied]);
        assert!(reason.len() <= MAX_REASON_BYTES, "{}", reason.len());
        assert!(
            reason.starts_with("returned an error: line one line two xxx"),
            "{reason}"
        );
        assert!(!reason.contains('\n'));
    }

    #[test]
    fn a_stopped_run_over_stdin_does_not_promise_a_resume() {
        let text = audit_failure("-");
        assert!(text.contains("standard input is never resumed"), "{text}");
        assert!(!text.contains("resumed run starts"), "{text}");
        let text = audit_failure("/data/events.jsonl");
        assert!(text.contains("a resumed run starts at line 257"), "{text}");
    }
}
