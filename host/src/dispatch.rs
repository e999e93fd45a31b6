//! The run loop: read batches, call every detector of the generation on
//! each, write findings in event order.

use std::io::{self, BufRead, Write};
use std::time::{Duration, Instant};

use crate::audit::record::Position;
use crate::audit::{AuditError, Auditor, BatchUnit, PluginCall};
use crate::bindings::vigil::plugin::types::EventBatch;
use crate::capability::log::{LogLevel, LogSource};
use crate::input::BatchReader;
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
    out: &mut impl Write,
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
/// every batch unit in `audit` before its findings are written.
pub fn run_audited<R: BufRead>(
    generation: &Generation,
    mut reader: BatchReader<R>,
    source: &str,
    batch_size: usize,
    out: &mut impl Write,
    mut audit: Option<&mut Auditor>,
) -> Result<RunStats, RunError> {
    let started = Instant::now();
    let mut stats = RunStats::default();
    let mut batch = EventBatch {
        data: Vec::new(),
        events: Vec::new(),
    };
    let mut malformed = Vec::new();
    let mut records: Vec<FindingRecord> = Vec::new();
    loop {
        let start = reader.position();
        let more = reader
            .fill(&mut batch, batch_size, &mut malformed)
            .map_err(|error| RunError::Input {
                source_name: source.to_owned(),
                error,
            })?;
        if !more && malformed.is_empty() {
            break;
        }
        for m in &malformed {
            tracing::warn!("{source}:{}: skipped malformed event: {}", m.line, m.reason);
        }
        let mut calls = Vec::new();
        if !batch.events.is_empty() {
            for plugin in &generation.detectors {
                if plugin.quarantine_reason().is_some() {
                    continue;
                }
                calls.push(call_plugin(plugin, &batch, source));
            }
        }
        if let Some(audit) = audit.as_deref_mut() {
            let raw = reader.raw_events();
            let unit = BatchUnit {
                source,
                start,
                end: reader.position(),
                events: &raw,
                malformed: &malformed,
                calls: &calls,
            };
            // Write-ahead: nothing of this batch is emitted or counted
            // unless its unit is in the log.
            audit.batch_unit(&unit).map_err(|error| RunError::Audit {
                error,
                source_name: source.to_owned(),
                first: start.line + 1,
                last: reader.position().line,
            })?;
        }
        stats.malformed += malformed.len() as u64;
        malformed.clear();
        stats.events += batch.events.len() as u64;
        records.clear();
        for call in calls {
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
    }
    stats.end = reader.position();
    stats.elapsed = started.elapsed();
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
