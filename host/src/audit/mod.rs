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
pub mod config;
pub mod error;
pub mod query;
pub mod record;
pub mod redact;
pub mod resume;
pub mod segments;
pub mod verify;
pub mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use self::config::{AuditConfig, InputMode};
use self::record::{BatchRecord, InvocationRecord, Lifecycle, MalformedRecord, Position, Record};
use self::redact::{Redaction, Scrub};
use self::writer::{AuditLog, WriterOptions};

pub use self::error::AuditError;

/// Turns what the host does into audit records.
#[derive(Debug)]
pub struct Auditor {
    log: AuditLog,
    inputs: InputMode,
    redaction: Redaction,
    json: Vec<u8>,
}

/// One plugin call as records: its invocation and the quarantine changes
/// around it (`pipeline/record.rs` builds them from a call's outcome).
#[derive(Debug)]
pub struct CallRecords {
    /// Quarantine changes before the call (a probe starts, a restore lifts).
    pub before: Vec<Lifecycle>,
    /// The invocation; the writer sets its `batch`.
    pub invocation: InvocationRecord,
    /// Quarantine changes the call caused.
    pub after: Vec<Lifecycle>,
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
    pub malformed: Vec<MalformedRecord>,
    /// Every plugin call on the batch.
    pub calls: Vec<CallRecords>,
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

    /// Keep a plugin's component in the log's store (by digest, for
    /// replay), before the pack-load record that names it.
    pub fn store_component(&mut self, digest: &str, bytes: &[u8]) -> Result<(), AuditError> {
        self.log.store_component(digest, bytes)
    }

    /// Write a batch unit (batch record, then one invocation record per
    /// call) and commit it. Call before emitting any of its findings.
    /// Returns the batch record's sequence number and the redaction
    /// replacements of its events, which enrichments of its findings reuse.
    pub fn batch_unit(&mut self, unit: BatchUnit<'_>) -> Result<(u64, Scrub), AuditError> {
        let mut scrub = Scrub::default();
        let events = self.event_inputs(unit.events, &mut scrub);
        let batch = BatchRecord {
            source: unit.source.to_owned(),
            start: unit.start,
            end: unit.end,
            invocations: unit.calls.len() as u32,
            malformed: unit.malformed,
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

        for mut call in unit.calls {
            call.invocation.batch = batch_seq;
            self.call(call, Record::Invocation, &scrub)?;
        }
        self.log.commit()?;
        Ok((batch_seq, scrub))
    }

    /// Append one call's records: the quarantine changes before it, its
    /// invocation (as `kind`), the changes after it.
    fn call(
        &mut self,
        call: CallRecords,
        kind: fn(InvocationRecord) -> Record,
        scrub: &Scrub,
    ) -> Result<(), AuditError> {
        let records = (call.before.into_iter().map(Record::Lifecycle))
            .chain([kind(call.invocation)])
            .chain(call.after.into_iter().map(Record::Lifecycle));
        for record in records {
            self.json.clear();
            self.write_record(&record, scrub)?;
            self.log.append_json(&self.json);
        }
        Ok(())
    }

    /// Write and commit one `enrichment` record per enricher call on a
    /// finding of the unit `batch` (redacted with that unit's `scrub`).
    /// Call before emitting the enriched finding.
    pub fn enrichments(
        &mut self,
        batch: u64,
        scrub: &Scrub,
        calls: Vec<CallRecords>,
    ) -> Result<(), AuditError> {
        for mut call in calls {
            call.invocation.batch = batch;
            self.call(call, Record::Enrichment, scrub)?;
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

/// The audit directory's store of what plugins read through `files`
/// (one file per SHA-256), beside `components/`.
pub fn files_store(dir: &Path) -> PathBuf {
    dir.join("files")
}
