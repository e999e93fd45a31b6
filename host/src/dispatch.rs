//! The run loop: read batches, call every detector of the generation on
//! each, write findings in event order.

use std::io::{self, BufRead, Write};
use std::time::{Duration, Instant};

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

/// Run every event of `input` (named `source` in output) through the
/// generation's detectors, writing findings to `out` as JSON Lines.
pub fn run(
    generation: &Generation,
    input: impl BufRead,
    source: &str,
    batch_size: usize,
    out: &mut impl Write,
) -> io::Result<RunStats> {
    let started = Instant::now();
    let mut stats = RunStats::default();
    let mut reader = BatchReader::new(input);
    let mut batch = EventBatch {
        data: Vec::new(),
        events: Vec::new(),
    };
    let mut malformed = Vec::new();
    let mut records: Vec<FindingRecord> = Vec::new();
    while reader.fill(&mut batch, batch_size, &mut malformed)? || !malformed.is_empty() {
        for m in malformed.drain(..) {
            stats.malformed += 1;
            tracing::warn!("{source}:{}: skipped malformed event: {}", m.line, m.reason);
        }
        if batch.events.is_empty() {
            continue;
        }
        stats.events += batch.events.len() as u64;
        records.clear();
        for plugin in &generation.detectors {
            if plugin.quarantine_reason().is_some() {
                continue;
            }
            call_plugin(plugin, &batch, source, &mut stats, &mut records);
        }
        // Stable: findings of one event keep plugin order.
        records.sort_by_key(|r| r.event.line);
        for record in &records {
            serde_json::to_writer(&mut *out, record)?;
            out.write_all(b"\n")?;
        }
        stats.findings += records.len() as u64;
        out.flush()?;
    }
    stats.elapsed = started.elapsed();
    Ok(stats)
}

fn call_plugin(
    plugin: &LoadedPlugin,
    batch: &EventBatch,
    source: &str,
    stats: &mut RunStats,
    records: &mut Vec<FindingRecord>,
) {
    let outcome = plugin.detect(batch);
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
    match outcome.result {
        Ok(findings) => records.extend(
            findings
                .into_iter()
                .map(|f| FindingRecord::new(&plugin.pack, &plugin.id, source, f)),
        ),
        Err(e) => {
            stats.failed_calls += 1;
            let (first, last) = (
                batch.events.first().map_or(0, |e| e.id),
                batch.events.last().map_or(0, |e| e.id),
            );
            tracing::error!(
                "plugin {label} {e} (batch of {source} lines {first}-{last}); continuing with a fresh instance"
            );
        }
    }
    if outcome.quarantined_now {
        let reason = plugin.quarantine_reason().unwrap_or_default();
        tracing::error!(
            "plugin {label} QUARANTINED after {reason}; it gets no more events in this run"
        );
        stats.quarantined.push(format!("{label}: {reason}"));
    }
}
