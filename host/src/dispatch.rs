//! The run loop: read batches, call every detector of the generation on
//! each, write findings in event order.

use std::io::{self, BufRead, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::audit::record::Position;
use crate::audit::{AuditError, Auditor, BatchUnit, PluginCall};
use crate::bindings::vigil::plugin::types::EventBatch;
use crate::capability::log::{LogLevel, LogSource};
use crate::input::{BatchReader, MalformedLine, RawEvents};
use crate::output::FindingRecord;
use crate::pack::Generation;
use crate::plugin::LoadedPlugin;

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
    /// Plugins quarantined during the run, with the reason.
    pub quarantined: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
}

impl RunStats {
    /// The one-line summary printed on stderr.
    pub fn summary(&self) -> String {
        format!(
            "vigil: {} events read, {} findings, {} errors ({} malformed lines, {} failed plugin calls), {} quarantined, {:.3} s",
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
         (nothing from them was emitted; a resumed run starts at line {first})"
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
}

/// Run every event of `input` (named `source` in output) through the
/// generation's detectors, writing findings to `out` as JSON Lines.
/// Without an audit log: used by `vigil test`, tests and benchmarks.
pub fn run(
    generation: &Generation,
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

/// How many dispatched batches may wait for the audit-and-emit stage. Two
/// keep both cores busy (one detecting, one hashing and writing) without
/// holding much in memory.
const PIPELINE_DEPTH: usize = 2;

/// One dispatched batch on its way to the audit-and-emit stage.
struct Dispatched<'g> {
    start: Position,
    end: Position,
    raw: RawEvents,
    malformed: Vec<MalformedLine>,
    calls: Vec<PluginCall<'g>>,
}

/// [`run`] reading through `reader` (which may start mid-file), recording
/// every batch unit in `audit` before its findings are written.
///
/// Two stages on two threads: this one reads and calls the detectors; the
/// other writes each batch unit to the audit log and only then emits its
/// findings (write-ahead), so auditing overlaps the next batch's detection
/// instead of adding to it. If the log cannot be written, the second stage
/// stops, nothing more is emitted, and the run returns [`RunError::Audit`].
pub fn run_audited<R: BufRead, W: Write + Send>(
    generation: &Generation,
    mut reader: BatchReader<R>,
    source: &str,
    batch_size: usize,
    out: &mut W,
    audit: Option<&mut Auditor>,
) -> Result<RunStats, RunError> {
    let started = Instant::now();
    let mut batch = EventBatch {
        data: Vec::new(),
        events: Vec::new(),
    };
    let (mut stats, end) = std::thread::scope(|scope| {
        let (to_emitter, from_dispatcher) = mpsc::sync_channel::<Dispatched<'_>>(PIPELINE_DEPTH);
        // Emitted batches' line buffers come back for reuse.
        let (recycle, recycled) = mpsc::channel::<RawEvents>();
        let emitter = scope.spawn(move || emit(from_dispatcher, recycle, source, out, audit));
        let read = loop {
            let start = reader.position();
            let mut malformed = Vec::new();
            match reader.fill(&mut batch, batch_size, &mut malformed) {
                Err(error) => {
                    break Err(RunError::Input {
                        source_name: source.to_owned(),
                        error,
                    });
                }
                Ok(more) if !more && malformed.is_empty() => break Ok(()),
                Ok(_) => {}
            }
            for m in &malformed {
                tracing::warn!("{source}:{}: skipped malformed event: {}", m.line, m.reason);
            }
            let mut calls = Vec::new();
            if !batch.events.is_empty() {
                for plugin in &generation.detectors {
                    if plugin.quarantine_reason().is_none() {
                        calls.push(call_plugin(plugin, &batch, source));
                    }
                }
            }
            let unit = Dispatched {
                start,
                end: reader.position(),
                raw: reader.take_raw(recycled.try_recv().unwrap_or_default()),
                malformed,
                calls,
            };
            // A closed channel means the emitter stopped on an error, which
            // `join` returns below.
            if to_emitter.send(unit).is_err() {
                break Ok(());
            }
        };
        drop(to_emitter);
        let emitted = emitter.join().expect("the emit stage does not panic")?;
        read.map(|()| (emitted, reader.position()))
    })?;
    stats.end = end;
    stats.elapsed = started.elapsed();
    Ok(stats)
}

/// The audit-and-emit stage: for each dispatched batch, in order, write its
/// unit to the audit log, then its findings to `out`, then count it.
fn emit<W: Write>(
    units: mpsc::Receiver<Dispatched<'_>>,
    recycle: mpsc::Sender<RawEvents>,
    source: &str,
    out: &mut W,
    mut audit: Option<&mut Auditor>,
) -> Result<RunStats, RunError> {
    let mut stats = RunStats::default();
    let mut records: Vec<FindingRecord> = Vec::new();
    for unit in units {
        if let Some(audit) = audit.as_deref_mut() {
            let raw = unit.raw.events();
            let batch_unit = BatchUnit {
                source,
                start: unit.start,
                end: unit.end,
                events: &raw,
                malformed: &unit.malformed,
                calls: &unit.calls,
            };
            // Write-ahead: nothing of this batch is emitted or counted
            // unless its unit is in the log.
            audit
                .batch_unit(&batch_unit)
                .map_err(|error| RunError::Audit {
                    error,
                    source_name: source.to_owned(),
                    first: unit.start.line + 1,
                    last: unit.end.line,
                })?;
        }
        stats.malformed += unit.malformed.len() as u64;
        stats.events += unit.raw.len() as u64;
        records.clear();
        for call in unit.calls {
            if call.outcome.result.is_err() {
                stats.failed_calls += 1;
            }
            if call.outcome.quarantined_now {
                let reason = call.plugin.quarantine_reason().unwrap_or_default();
                stats
                    .quarantined
                    .push(format!("{}: {reason}", call.plugin.label()));
            }
            records.extend(call.findings);
        }
        // Stable: findings of one event keep plugin order.
        records.sort_by_key(|r| r.event.line);
        for record in &records {
            serde_json::to_writer(&mut *out, record).map_err(|e| RunError::Output(e.into()))?;
            out.write_all(b"\n").map_err(RunError::Output)?;
        }
        stats.findings += records.len() as u64;
        out.flush().map_err(RunError::Output)?;
        // The dispatcher may have finished already; then the buffer just drops.
        let _ = recycle.send(unit.raw);
    }
    Ok(stats)
}

/// Call one plugin on `batch` and report what it did to the host log.
fn call_plugin<'p>(plugin: &'p LoadedPlugin, batch: &EventBatch, source: &str) -> PluginCall<'p> {
    let mut outcome = plugin.detect(batch);
    let label = plugin.label();
    for log in &outcome.logs {
        let stream = match log.source {
            LogSource::Plugin => "log",
            LogSource::Stdout => "stdout",
            LogSource::Stderr => "stderr",
        };
        let fields = log
            .fields
            .iter()
            .map(|(k, v)| format!(" {k}={v:?}"))
            .collect::<String>();
        match log.level {
            LogLevel::Trace => tracing::trace!("[{label} {stream}] {}{fields}", log.message),
            LogLevel::Debug => tracing::debug!("[{label} {stream}] {}{fields}", log.message),
            LogLevel::Info => tracing::info!("[{label} {stream}] {}{fields}", log.message),
            LogLevel::Warn => tracing::warn!("[{label} {stream}] {}{fields}", log.message),
            LogLevel::Error => tracing::error!("[{label} {stream}] {}{fields}", log.message),
        }
    }
    if outcome.logs_dropped > 0 {
        tracing::warn!(
            "[{label}] dropped {} log records over the per-call budget",
            outcome.logs_dropped
        );
    }
    let findings = match &mut outcome.result {
        Ok(findings) => std::mem::take(findings)
            .into_iter()
            .map(|f| FindingRecord::new(&plugin.pack, &plugin.id, source, f))
            .collect(),
        Err(e) => {
            let (first, last) = (
                batch.events.first().map_or(0, |e| e.id),
                batch.events.last().map_or(0, |e| e.id),
            );
            tracing::error!(
                "plugin {label} {e} (batch of {source} lines {first}-{last}); continuing with a fresh instance"
            );
            Vec::new()
        }
    };
    if outcome.quarantined_now {
        let reason = plugin.quarantine_reason().unwrap_or_default();
        tracing::error!(
            "plugin {label} QUARANTINED after {reason}; it gets no more events in this run"
        );
    }
    PluginCall {
        plugin,
        outcome,
        findings,
    }
}
