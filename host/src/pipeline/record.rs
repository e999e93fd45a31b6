//! What the pipeline hands the audit log: loads, calls and their quarantine
//! changes turned into the log's records. The audit module only consumes
//! records; it does not know packs, plugins or call outcomes, so the
//! conversions live here, on the audit stage's thread.

use std::sync::Arc;

use crate::audit::record::{
    InvocationRecord, Lifecycle, LogLine, MalformedRecord, Outcome, PluginLoad,
};
use crate::audit::{AuditError, Auditor, CallRecords};
use crate::bindings::vigil::plugin::types::Enrichment;
use crate::capability::log::LogSource;
use crate::finding::{EnrichmentResult, FindingRecord};
use crate::load::pack::Generation;
use crate::run::plugin::{CallError, CallOutcome, LoadedPlugin, QuarantineChange};

use super::input::MalformedLine;
use super::notice::Notice;

/// One detector call of a batch, as the dispatcher hands it to the audit
/// stage.
#[derive(Debug)]
pub struct PluginCall {
    /// The plugin.
    pub plugin: Arc<LoadedPlugin>,
    /// What happened.
    pub outcome: CallOutcome,
    /// Its findings with provenance (empty unless the call succeeded).
    pub findings: Vec<FindingRecord>,
}

impl PluginCall {
    /// The call's records (the invocation's `batch` is set by the writer).
    pub fn records(&self) -> CallRecords {
        call_records(&self.plugin, &self.outcome, self.findings.clone())
    }
}

/// Record a loaded generation: every plugin's component (stored by digest
/// for replay) and effective grants, then the revocations in force.
pub fn pack_load(auditor: &mut Auditor, generation: &Generation) -> Result<(), AuditError> {
    let mut plugins = Vec::new();
    for report in &generation.reports {
        auditor.store_component(&report.digest, report.component.bytes())?;
        plugins.push(PluginLoad {
            id: report.id.clone(),
            world: report.world,
            component: report.digest.clone(),
            grants: report.grants_digest.clone(),
            grant_set: report.grants.clone(),
            init: report.init.clone(),
        });
    }
    auditor.lifecycle(Lifecycle::PackLoad {
        pack: generation.manifest.name.clone(),
        version: generation.manifest.version.clone(),
        generation: generation.number,
        source: generation.source.display(""),
        plugins,
    })?;
    let revocations = generation.revocations.in_force();
    if !revocations.is_empty() {
        auditor.lifecycle(Lifecycle::RevocationsInForce { revocations })?;
    }
    Ok(())
}

/// Record a notice posted from outside the pipeline (`notice.rs`).
pub fn notice(auditor: &mut Auditor, notice: Notice) -> Result<(), AuditError> {
    match notice {
        Notice::Generation { generation, change } => {
            pack_load(auditor, &generation)?;
            auditor.lifecycle(change).map(drop)
        }
        Notice::Lifecycle(lifecycle) => auditor.lifecycle(lifecycle).map(drop),
    }
}

/// The records of enricher `calls` on `finding`.
pub fn enrichment_records(
    finding: &FindingRecord,
    calls: &[(Arc<LoadedPlugin>, CallOutcome<Enrichment>)],
) -> Vec<CallRecords> {
    (calls.iter())
        .map(|(plugin, outcome)| {
            let mut records = call_records(plugin, outcome, Vec::new());
            records.invocation.input = Some(finding.clone());
            records.invocation.enrichment = (outcome.result.as_ref().ok())
                .cloned()
                .map(EnrichmentResult::enriched);
            records
        })
        .collect()
}

/// Lines that were not events, as the batch record keeps them.
pub fn malformed_records(lines: &[MalformedLine]) -> Vec<MalformedRecord> {
    (lines.iter())
        .map(|m| MalformedRecord {
            line: m.line,
            reason: m.reason.clone(),
        })
        .collect()
}

/// The recorded outcome of a failed call.
pub fn outcome_of(e: &CallError) -> Outcome {
    match e {
        CallError::Deadline(_) => Outcome::Deadline,
        CallError::MemoryLimit(_) | CallError::Trap(_) | CallError::Instantiate(_) => Outcome::Trap,
        _ => Outcome::Error,
    }
}

/// A call's invocation record (batch 0 until the writer sets it) and its
/// quarantine changes.
fn call_records<T>(
    plugin: &LoadedPlugin,
    outcome: &CallOutcome<T>,
    findings: Vec<FindingRecord>,
) -> CallRecords {
    let (kind, error) = match &outcome.result {
        Ok(_) => (Outcome::Ok, None),
        Err(e) => (outcome_of(e), Some(e.to_string())),
    };
    let invocation = InvocationRecord {
        batch: 0,
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
        logs: (outcome.logs.iter())
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
    };
    let quarantine = |changes: &mut dyn Iterator<Item = &QuarantineChange>| {
        changes
            .map(|c| quarantine_record(c, &plugin.pack, &plugin.id))
            .collect()
    };
    CallRecords {
        before: quarantine(&mut outcome.before.iter()),
        invocation,
        after: quarantine(&mut outcome.after.iter()),
    }
}

/// The lifecycle record of a quarantine change of `pack/plugin`.
fn quarantine_record(change: &QuarantineChange, pack: &str, plugin: &str) -> Lifecycle {
    let (pack, plugin) = (pack.to_owned(), plugin.to_owned());
    match change {
        QuarantineChange::Quarantined {
            reason,
            until,
            backoff,
        } => Lifecycle::Quarantine {
            pack,
            plugin,
            reason: reason.clone(),
            until: jiff::Timestamp::try_from(*until).ok(),
            backoff_ms: Some(backoff.as_millis() as u64),
        },
        QuarantineChange::Probe { reason } => Lifecycle::QuarantineProbe {
            pack,
            plugin,
            reason: reason.clone(),
        },
        QuarantineChange::Lifted { reason } => Lifecycle::QuarantineLifted {
            pack,
            plugin,
            reason: reason.clone(),
        },
    }
}
