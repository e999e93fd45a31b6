//! The audit log: every input, output, host call and authority, in an
//! append-only, hash-chained, replayable record.
//!
//! - [`record`]: what a line holds (lifecycle, batch, invocation,
//!   enrichment, checkpoint);
//! - [`chain`]: the hash-chain envelope of a line;
//! - [`writer`], [`segments`]: appending with group commit, rotation and
//!   torn-tail repair;
//! - [`redact`]: fields dropped or hashed before anything is written;
//! - [`verify`], [`query`]: `vigil audit verify|show|stats`;
//! - [`resume`]: where an interrupted run over a file continues.
//!
//! [`Auditor`] is what the host talks to: it turns loads, batches and calls
//! into records and commits each batch unit before its findings are emitted,
//! and each finding's enrichment records before the enriched finding is.

pub mod chain;
pub mod query;
pub mod record;
pub mod redact;
pub mod resume;
pub mod segments;
pub mod verify;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use self::record::{
    BatchRecord, InvocationRecord, Lifecycle, LogLine, MalformedRecord, Outcome, PluginLoad,
    Position, Record,
};
use self::redact::{Redaction, Scrub};
use self::writer::{AuditLog, WriterOptions};
use crate::bindings::vigil::plugin::types::Enrichment;
use crate::capability::log::LogSource;
use crate::load::pack::Generation;
use crate::load::policy::{AuditConfig, InputMode};
use crate::pipeline::input::MalformedLine;
use crate::run::output::{EnrichmentResult, FindingRecord};
use crate::run::plugin::{CallError, CallOutcome, LoadedPlugin, QuarantineChange};

pub use self::writer::AuditError;

/// Turns what the host does into audit records.
#[derive(Debug)]
pub struct Auditor {
    log: AuditLog,
    inputs: InputMode,
    redaction: Redaction,
    json: Vec<u8>,
}

/// One plugin call of a batch, as the dispatcher hands it over.
#[derive(Debug)]
pub struct PluginCall {
    /// The plugin.
    pub plugin: Arc<LoadedPlugin>,
    /// What happened.
    pub outcome: CallOutcome,
    /// Its findings with provenance (empty unless the call succeeded).
    pub findings: Vec<FindingRecord>,
}

/// A batch and the calls made on it: one unit of the log.
#[derive(Debug)]
pub struct BatchUnit<'a> {
    /// Input name.
    pub source: &'a str,
    /// Position before the batch.
    pub start: Position,
    /// Position after it.
    pub end: Position,
    /// `(event id, original line)` of every event.
    pub events: &'a [(u64, &'a [u8])],
    /// Lines of this range that were not events.
    pub malformed: &'a [MalformedLine],
    /// Every plugin call on the batch.
    pub calls: &'a [PluginCall],
}

impl Auditor {
    /// Open the log in `dir` with the policy's `[audit]` settings.
    pub fn open(config: &AuditConfig, dir: &Path) -> Result<Auditor, AuditError> {
        let defaults = WriterOptions::default();
        let options = WriterOptions {
            fsync_interval: config
                .fsync_interval_ms
                .map_or(defaults.fsync_interval, Duration::from_millis),
            segment_bytes: config
                .segment_mb
                .map_or(defaults.segment_bytes, |mb| mb.saturating_mul(1 << 20)),
            checkpoint_every: config.checkpoint_every.unwrap_or(defaults.checkpoint_every),
        };
        Ok(Auditor {
            log: AuditLog::open(dir, options)?,
            inputs: config.inputs,
            redaction: Redaction::new(&config.redact.drop, &config.redact.hash),
            json: Vec::with_capacity(1 << 20),
        })
    }

    /// The audit directory.
    pub fn dir(&self) -> &Path {
        self.log.dir()
    }

    /// Sequence number of the last record written.
    pub fn last_seq(&self) -> u64 {
        self.log.last_seq()
    }

    /// Append and commit one lifecycle record.
    pub fn lifecycle(&mut self, event: Lifecycle) -> Result<u64, AuditError> {
        let seq = self.log.append(&Record::Lifecycle(event))?;
        self.log.commit()?;
        Ok(seq)
    }

    /// Make everything appended so far durable now (`fdatasync`).
    pub fn sync(&mut self) -> Result<(), AuditError> {
        self.log.sync()
    }

    /// Highest grant-change id the log holds (see `revocation.rs`).
    pub fn last_grant_change(&self) -> u64 {
        self.log.last_grant_change()
    }

    /// Record a loaded generation: every plugin's component (stored by
    /// digest for replay) and effective grants.
    pub fn pack_load(&mut self, generation: &Generation) -> Result<(), AuditError> {
        let mut plugins = Vec::new();
        for report in &generation.reports {
            self.log
                .store_component(&report.digest, report.component.bytes())?;
            plugins.push(PluginLoad {
                id: report.id.clone(),
                world: report.world,
                component: report.digest.clone(),
                grants: report.grants_digest.clone(),
                grant_set: report.grants.clone(),
                init: report.init.clone(),
            });
        }
        self.lifecycle(Lifecycle::PackLoad {
            pack: generation.manifest.name.clone(),
            version: generation.manifest.version.clone(),
            generation: generation.number,
            source: generation.source.display(""),
            plugins,
        })?;
        let revocations = generation.revocations.in_force();
        if !revocations.is_empty() {
            self.lifecycle(Lifecycle::RevocationsInForce { revocations })?;
        }
        Ok(())
    }

    /// Write a batch unit (batch record, then one invocation record per
    /// call) and commit it. Call before emitting any of its findings.
    /// Returns the batch record's sequence number and the redaction
    /// replacements of its events, which enrichments of its findings reuse.
    pub fn batch_unit(&mut self, unit: &BatchUnit<'_>) -> Result<(u64, Scrub), AuditError> {
        let mut scrub = Scrub::default();
        let events = self.event_inputs(unit.events, &mut scrub);
        let batch = BatchRecord {
            source: unit.source.to_owned(),
            start: unit.start,
            end: unit.end,
            invocations: unit.calls.len() as u32,
            malformed: unit
                .malformed
                .iter()
                .map(|m| MalformedRecord {
                    line: m.line,
                    reason: m.reason.clone(),
                })
                .collect(),
            events: Vec::new(),
        };
        self.json.clear();
        self.write_record(&Record::Batch(batch), &scrub)?;
        // Splice the events in: full events go in as the original JSON text,
        // never parsed and re-printed on the hot path.
        self.json.pop();
        self.json.extend_from_slice(b",\"events\":[");
        for (i, event) in events.iter().enumerate() {
            if i > 0 {
                self.json.push(b',');
            }
            write_event(&mut self.json, event);
        }
        self.json.extend_from_slice(b"]}");
        let batch_seq = self.log.append_json(&self.json);

        for call in unit.calls {
            let record = Record::Invocation(invocation(
                batch_seq,
                &call.plugin,
                &call.outcome,
                call.findings.clone(),
            ));
            self.quarantine_changes(&call.plugin, &call.outcome.before, &scrub)?;
            self.json.clear();
            self.write_record(&record, &scrub)?;
            self.log.append_json(&self.json);
            self.quarantine_changes(&call.plugin, &call.outcome.after, &scrub)?;
        }
        self.log.commit()?;
        Ok((batch_seq, scrub))
    }

    /// Append the quarantine changes of a call (before or after its
    /// invocation record; part of the same unit).
    fn quarantine_changes<'c>(
        &mut self,
        plugin: &LoadedPlugin,
        changes: impl IntoIterator<Item = &'c QuarantineChange>,
        scrub: &Scrub,
    ) -> Result<(), AuditError> {
        for change in changes {
            self.json.clear();
            let record = Record::Lifecycle(change.record(&plugin.pack, &plugin.id));
            self.write_record(&record, scrub)?;
            self.log.append_json(&self.json);
        }
        Ok(())
    }

    /// Write and commit one `enrichment` record per enricher call on
    /// `finding` (from the unit `batch`, redacted with its `scrub`). Call
    /// before emitting the enriched finding.
    pub fn enrichments(
        &mut self,
        batch: u64,
        scrub: &Scrub,
        finding: &FindingRecord,
        calls: &[(Arc<LoadedPlugin>, CallOutcome<Enrichment>)],
    ) -> Result<(), AuditError> {
        for (plugin, outcome) in calls {
            let mut record = invocation(batch, plugin, outcome, Vec::new());
            record.input = Some(finding.clone());
            record.enrichment = outcome
                .result
                .as_ref()
                .ok()
                .cloned()
                .map(EnrichmentResult::enriched);
            self.quarantine_changes(plugin, &outcome.before, scrub)?;
            self.json.clear();
            self.write_record(&Record::Enrichment(record), scrub)?;
            self.log.append_json(&self.json);
            self.quarantine_changes(plugin, &outcome.after, scrub)?;
        }
        self.log.commit()
    }

    /// Serialize `record` into `self.json`, scrubbing redacted values.
    fn write_record(&mut self, record: &Record, scrub: &Scrub) -> Result<(), AuditError> {
        let serialize_error = |e: serde_json::Error| AuditError::Io {
            path: self.log.dir().to_owned(),
            action: "serializing a record",
            source: std::io::Error::other(e),
        };
        if scrub.is_empty() {
            serde_json::to_writer(&mut self.json, record).map_err(serialize_error)
        } else {
            let mut value = serde_json::to_value(record).map_err(serialize_error)?;
            scrub.apply(&mut value);
            serde_json::to_writer(&mut self.json, &value).map_err(serialize_error)
        }
    }

    fn event_inputs<'e>(
        &self,
        events: &[(u64, &'e [u8])],
        scrub: &mut Scrub,
    ) -> Vec<RecordedEvent<'e>> {
        let parse = !self.redaction.is_empty();
        let mut out: Vec<RecordedEvent<'e>> = events
            .iter()
            .map(|&(id, line)| {
                let sha256 = hex::encode(Sha256::digest(line));
                let mut body = match self.inputs {
                    InputMode::Full => EventBody::Raw(line),
                    InputMode::Digest => EventBody::None,
                };
                if parse
                    && let Ok(mut value) = serde_json::from_slice::<Value>(line)
                    && self.redaction.redact_event(&mut value, scrub)
                {
                    body = match self.inputs {
                        InputMode::Full => EventBody::Redacted(value),
                        InputMode::Digest => EventBody::None,
                    };
                }
                RecordedEvent { id, sha256, body }
            })
            .collect();
        // A redacted value can also sit in fields that were not redacted
        // (a user name inside a command line): scrub every recorded event.
        if !scrub.is_empty() {
            for event in &mut out {
                if let EventBody::Raw(line) = event.body
                    && let Ok(value) = serde_json::from_slice::<Value>(line)
                {
                    event.body = EventBody::Redacted(value);
                }
                if let EventBody::Redacted(value) = &mut event.body {
                    scrub.apply(value);
                }
            }
        }
        out
    }

    /// Commit, sync and close, with a final `host-stop` record.
    pub fn close(mut self, reason: &str) -> Result<(), AuditError> {
        self.log.append(&Record::Lifecycle(Lifecycle::HostStop {
            reason: reason.to_owned(),
        }))?;
        self.log.close()
    }

    /// Commit, sync and close without a `host-stop` record: for a command
    /// that is not a host and only appends a record (`vigil revoke`).
    pub fn release(self) -> Result<(), AuditError> {
        self.log.close()
    }
}

/// How one event goes into its batch record.
enum EventBody<'e> {
    Raw(&'e [u8]),
    Redacted(Value),
    None,
}

struct RecordedEvent<'e> {
    id: u64,
    sha256: String,
    body: EventBody<'e>,
}

fn write_event(out: &mut Vec<u8>, event: &RecordedEvent<'_>) {
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(event.id.to_string().as_bytes());
    out.extend_from_slice(b",\"sha256\":\"");
    out.extend_from_slice(event.sha256.as_bytes());
    out.push(b'"');
    match &event.body {
        // The reader accepted this line as a JSON object (serde_json), so it
        // can stand in the record as it is; trimming drops a trailing `\r`.
        EventBody::Raw(line) => {
            out.extend_from_slice(b",\"event\":");
            out.extend_from_slice(line.trim_ascii());
        }
        EventBody::Redacted(value) => {
            out.extend_from_slice(b",\"event\":");
            // Serializing a `Value` into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, value);
            out.extend_from_slice(b",\"redacted\":true");
        }
        EventBody::None => {}
    }
    out.push(b'}');
}

/// The invocation record of one call.
fn invocation<T>(
    batch: u64,
    plugin: &LoadedPlugin,
    outcome: &CallOutcome<T>,
    findings: Vec<FindingRecord>,
) -> InvocationRecord {
    let (kind, error) = match &outcome.result {
        Ok(_) => (Outcome::Ok, None),
        Err(e) => (outcome_of(e), Some(e.to_string())),
    };
    InvocationRecord {
        batch,
        pack: plugin.pack.to_string(),
        version: plugin.pack_version.to_string(),
        generation: plugin.generation,
        plugin: plugin.id.to_string(),
        component: plugin.digest.clone(),
        grants: plugin.grants_digest.clone(),
        random_seed: hex::encode(outcome.random_seed),
        outcome: kind,
        error,
        findings,
        input: None,
        enrichment: None,
        host_calls: outcome.host_calls.clone(),
        host_calls_refused: outcome.host_calls_refused,
        logs: outcome
            .logs
            .iter()
            .filter(|l| l.source != LogSource::Plugin)
            .map(|l| LogLine {
                stream: match l.source {
                    LogSource::Plugin => "log",
                    LogSource::Stdout => "stdout",
                    LogSource::Stderr => "stderr",
                }
                .to_owned(),
                level: l.level.name().to_owned(),
                message: l.message.clone(),
                fields: l.fields.clone(),
            })
            .collect(),
        duration_us: outcome.elapsed.as_micros() as u64,
        quarantined: outcome.quarantined_now(),
        probe: outcome.probe,
    }
}

/// The audit directory's store of what plugins read through `files`
/// (one file per SHA-256), beside `components/`.
pub fn files_store(dir: &Path) -> PathBuf {
    dir.join("files")
}

/// The recorded outcome of a failed call.
pub fn outcome_of(e: &CallError) -> Outcome {
    match e {
        CallError::Deadline(_) => Outcome::Deadline,
        CallError::MemoryLimit(_) | CallError::Trap(_) | CallError::Instantiate(_) => Outcome::Trap,
        _ => Outcome::Error,
    }
}

/// SHA-256 of a grant set's JSON: the digest invocations refer to.
pub fn grants_digest(grants: &record::GrantSet) -> String {
    let json = serde_json::to_vec(grants).expect("a grant set serializes");
    hex::encode(Sha256::digest(json))
}
