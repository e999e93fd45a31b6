//! What the audit log holds: one [`Record`] per line, wrapped in the
//! hash-chain envelope of [`super::chain`].
//!
//! Kinds (the `kind` field of each line):
//! - `lifecycle`: host start/stop, pack load (with every plugin's effective
//!   grants, limits, config and component digest) or refusal, a reload's
//!   generation change or refusal, revocations
//!   in force at load, grant changes (`vigil revoke`/`restore`), quarantine,
//!   quarantine probe and lift, run start/end, torn-tail repair;
//! - `batch`: the events of one batch (full, redacted or digests only),
//!   malformed lines, and the source position before and after it;
//! - `invocation`: one plugin call on one batch: outcome, findings, logs and
//!   every host call in order, with the values the host supplied;
//! - `checkpoint`: periodic summary of the chain so far.
//!
//! A batch record and the invocation records that follow it form one unit:
//! they are written together before any of the batch's findings leave the
//! host, and a torn tail that cuts a unit short removes the whole unit.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::capability::Capability;
pub use crate::capability::tape::{CallStatus, HostCall};
use crate::finding::FindingRecord;
pub use crate::load::grants::GrantSet;
use crate::load::manifest::World;
pub use crate::pipeline::position::Position;
pub use crate::run::init::InitRecord;
pub use crate::run::limits::LimitsRecord;

/// The body of one audit line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Record {
    /// Something that happened to the host, a pack or a plugin.
    Lifecycle(Lifecycle),
    /// The input of one batch.
    Batch(BatchRecord),
    /// One plugin call on one batch.
    Invocation(InvocationRecord),
    /// One enricher call on one finding (written on its own, after the
    /// batch unit that produced the finding and before the finding is
    /// emitted; `batch` names that unit, `input` is the finding).
    Enrichment(InvocationRecord),
    /// A summary of the chain so far.
    Checkpoint(Checkpoint),
}

/// Host, pack and plugin lifecycle events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Lifecycle {
    /// The host opened the audit log.
    HostStart {
        /// `vigil` version.
        version: String,
        /// Process id.
        pid: u32,
        /// The command line's subcommand, e.g. `run`.
        command: String,
    },
    /// The host closed the audit log cleanly.
    HostStop {
        /// Why, e.g. `run finished`.
        reason: String,
    },
    /// A pack generation was loaded; lists what every plugin may do.
    PackLoad {
        /// Pack name.
        pack: String,
        /// Pack version.
        version: String,
        /// Generation number within this host process.
        generation: u64,
        /// Where the pack came from.
        source: String,
        /// Every plugin of the pack with its grants.
        plugins: Vec<PluginLoad>,
    },
    /// A pack was refused; nothing of it runs.
    PackRefused {
        /// Where the pack came from.
        source: String,
        /// Every problem found.
        reasons: Vec<String>,
    },
    /// A reload changed a pack's current generation: a new one replaced
    /// it (written after the new generation's `pack-load` and before any
    /// call on it), a new pack was added, or a pack was removed. Batches
    /// already in flight on the old generation may still be recorded
    /// after it (their invocations name their generation).
    GenerationChange {
        /// Pack name.
        pack: String,
        /// What set the reload off: `watch: <paths>`, `SIGHUP`,
        /// `admin: POST /reload`.
        trigger: String,
        /// The generation replaced; absent for a pack new to the host.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<GenerationRef>,
        /// The generation now current; absent when the pack was removed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<GenerationRef>,
        /// Per plugin id of either generation: what changed.
        plugins: Vec<PluginChange>,
    },
    /// A reload was refused (the pack does not load, or its own test cases
    /// fail): nothing of it runs, and the generation in force keeps running.
    ReloadRefused {
        /// The pack directory.
        source: String,
        /// The pack's name, when its manifest could be read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pack: Option<String>,
        /// What set the reload off.
        trigger: String,
        /// The generation that stays current, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kept: Option<GenerationRef>,
        /// Every problem found.
        reasons: Vec<String>,
    },
    /// A sink could not take findings (a webhook's queue was full, or it
    /// was still failing when the host stopped): how many, since the last
    /// such record. The findings are in the log's invocation records.
    SinkOverflow {
        /// The sink (a webhook's URL).
        sink: String,
        /// Findings not delivered since the last record.
        dropped: u64,
        /// Findings not delivered since the host started.
        total: u64,
        /// Why.
        reason: String,
    },
    /// A capability of a plugin was revoked or restored: one record per
    /// `vigil revoke` or `vigil restore`, with that command's own reason,
    /// actor and time, written by the command itself or, when a host was
    /// running, by that host (see `revocation.rs`).
    GrantChange {
        /// Revoke or restore.
        action: GrantAction,
        /// `plugin-id` or `pack/plugin-id`.
        plugin: String,
        /// The capability; absent for every capability.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capability: Option<Capability>,
        /// Why, as given by the operator.
        reason: String,
        /// Who asked.
        by: String,
        /// When it was asked.
        requested_at: Timestamp,
        /// e.g. which revocations a restore ended.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        /// The change's id in the state dir's revocation list: how a
        /// recorder knows a change is already in this log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        change: Option<u64>,
    },
    /// The revocations in force when a pack was loaded (a note of state,
    /// not a change: each was recorded as a `grant-change` when made).
    RevocationsInForce {
        /// Every revocation in force, oldest first.
        revocations: Vec<Revocation>,
    },
    /// A plugin misbehaved `quarantine_after` times in a row (or on a
    /// probe) and gets no calls until `until`; then one call probes it.
    Quarantine {
        /// Pack name.
        pack: String,
        /// Plugin id.
        plugin: String,
        /// Why (plugin-controlled text inside: the call's error).
        reason: String,
        /// When the back-off ends.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<Timestamp>,
        /// The back-off, milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backoff_ms: Option<u64>,
    },
    /// The back-off of a quarantine ended: the invocation that follows is a
    /// probe call.
    QuarantineProbe {
        /// Pack name.
        pack: String,
        /// Plugin id.
        plugin: String,
        /// The reason of the quarantine being probed.
        reason: String,
    },
    /// A quarantine ended: the probe call behaved, or an operator restored
    /// a capability of the plugin.
    QuarantineLifted {
        /// Pack name.
        pack: String,
        /// Plugin id.
        plugin: String,
        /// `probe succeeded`, `probe behaved (...)` (it returned an error
        /// value, which is not misbehaviour), or `restored by <who>`.
        reason: String,
    },
    /// A run over one input started.
    RunStart {
        /// The input name.
        source: String,
        /// Where reading starts: non-zero when resuming an interrupted run.
        from: Position,
        /// Set when this run resumes one that did not finish.
        resumed: bool,
    },
    /// A run over one input finished.
    RunEnd {
        /// The input name.
        source: String,
        /// Where reading stopped.
        at: Position,
        /// Events dispatched in this run.
        events: u64,
        /// Findings emitted in this run.
        findings: u64,
        /// Malformed lines plus failed plugin calls.
        errors: u64,
    },
    /// On open, the log's tail was incomplete (the host died mid-write) and
    /// was cut back to the last complete unit.
    TailRepaired {
        /// The segment file that was cut.
        segment: String,
        /// Its length after the cut.
        offset: u64,
        /// Bytes removed.
        bytes_removed: u64,
        /// Complete records removed because their unit was incomplete.
        records_removed: u64,
        /// What was wrong.
        reason: String,
    },
}

/// A generation as a reload record names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationRef {
    /// Generation number within the host process.
    pub generation: u64,
    /// The pack's version (`pack.toml`).
    pub version: String,
}

/// How one plugin differs between two generations of its pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginChange {
    /// Plugin id.
    pub plugin: String,
    /// What happened to it.
    pub change: ChangeKind,
    /// SHA-256 of its component before (absent when added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_component: Option<String>,
    /// SHA-256 of its component after (absent when removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_component: Option<String>,
    /// Effective capabilities it gained.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities_added: Vec<Capability>,
    /// Effective capabilities it lost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities_removed: Vec<Capability>,
    /// Whether anything it is allowed changed (capabilities, scopes,
    /// config, limits: the grant set's digest differs).
    pub grants_changed: bool,
}

/// What happened to a plugin in a generation change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// New in this generation.
    Added,
    /// Gone from this generation.
    Removed,
    /// Its component or grants differ.
    Changed,
    /// Same component, same grants.
    Unchanged,
}

impl ChangeKind {
    /// The name the record uses.
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Changed => "changed",
            ChangeKind::Unchanged => "unchanged",
        }
    }
}

/// One revocation in force (`revocation.rs` keeps the list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// `plugin-id` (any pack) or `pack/plugin-id`.
    pub plugin: String,
    /// The revoked capability; `None` revokes every capability.
    pub capability: Option<Capability>,
    /// Why, as given to `vigil revoke --reason`.
    pub reason: String,
    /// Who asked (the OS user running `vigil revoke`).
    pub by: String,
    /// When it was asked.
    pub at: Timestamp,
}

/// Whether a grant change revokes or restores (`revocation::Action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GrantAction {
    /// `vigil revoke`.
    Revoke,
    /// `vigil restore`.
    Restore,
}

impl GrantAction {
    /// `revoke` or `restore`, as the log writes it.
    pub fn name(self) -> &'static str {
        match self {
            GrantAction::Revoke => "revoke",
            GrantAction::Restore => "restore",
        }
    }
}

impl std::fmt::Display for GrantAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One plugin of a loaded pack, as granted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginLoad {
    /// Plugin id.
    pub id: String,
    /// Its world (`detector`, `enricher`, `responder` in the log).
    pub world: World,
    /// SHA-256 of the component bytes; the component is kept in the audit
    /// directory's `components/` store under this name.
    pub component: String,
    /// SHA-256 of the grant set below; invocations refer to it.
    pub grants: String,
    /// The effective grant set.
    pub grant_set: GrantSet,
    /// How its instances start and what `init` read at load (absent in
    /// logs written before pre-initialisation: every instance ran `init`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitRecord>,
}

/// The input of one batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// The input name.
    pub source: String,
    /// Position before the batch's first line.
    pub start: Position,
    /// Position after its last line: where a resumed run continues.
    pub end: Position,
    /// Invocation records that complete this batch's unit.
    pub invocations: u32,
    /// Lines in this range that were not events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub malformed: Vec<MalformedRecord>,
    /// The events, in input order. (The writer splices them in after the
    /// other fields, so it serializes this empty and skipped.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventInput>,
}

/// A line that was not an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MalformedRecord {
    /// 1-based line number.
    pub line: u64,
    /// Why it was rejected.
    pub reason: String,
}

/// One event of a batch as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventInput {
    /// Event id (its line number), as plugins saw it.
    pub id: u64,
    /// SHA-256 of the event's original line.
    pub sha256: String,
    /// The event, when inputs are recorded in full: exactly as read, or
    /// with the policy's redactions applied (then `redacted` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Value>,
    /// Set when `event` differs from the original line by redaction.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

/// How a plugin call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Findings returned and accepted.
    Ok,
    /// The plugin returned an error, or its output broke a limit.
    Error,
    /// The guest trapped (including the memory cap).
    Trap,
    /// The epoch deadline stopped it.
    Deadline,
}

/// One plugin call on one batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvocationRecord {
    /// Sequence number of the batch record this call processed.
    pub batch: u64,
    /// Pack name.
    pub pack: String,
    /// Pack version.
    pub version: String,
    /// Generation number.
    pub generation: u64,
    /// Plugin id.
    pub plugin: String,
    /// SHA-256 of the component.
    pub component: String,
    /// SHA-256 of the grant set (see the pack-load record).
    pub grants: String,
    /// Seed of the call's WASI random generators: with it, `wasi:random`
    /// returns the same bytes on replay.
    pub random_seed: String,
    /// How the call ended.
    pub outcome: Outcome,
    /// The error, unless the outcome is `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Findings emitted (none unless `ok`).
    #[serde(default)]
    pub findings: Vec<FindingRecord>,
    /// For an enrichment: the finding the enricher received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<FindingRecord>,
    /// For an enrichment: what the enricher returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrichment: Option<crate::finding::EnrichmentResult>,
    /// Every host call, in order (`log.emit` calls included).
    pub host_calls: Vec<HostCall>,
    /// Host calls refused unrun past the per-call recording limits.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub host_calls_refused: u64,
    /// Captured stdout/stderr lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogLine>,
    /// Wall time of the call, microseconds.
    pub duration_us: u64,
    /// Set when this call quarantined the plugin.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quarantined: bool,
    /// Set when this call was the probe at the end of a quarantine.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub probe: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A log line of an invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// `log`, `stdout` or `stderr`.
    pub stream: String,
    /// Level name.
    pub level: String,
    /// Message.
    pub message: String,
    /// Structured fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, String)>,
}

/// A summary of the chain up to and including this record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Records before this one.
    pub records: u64,
    /// Hash of the record before this one.
    pub head: String,
    /// Segment this record opens or sits in.
    pub segment: u64,
    /// Highest grant-change id recorded so far (see `GrantChange::change`),
    /// so the last segment alone tells a recorder what the log holds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_grant_change: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_fields_read_and_write_the_strings_older_logs_hold() {
        for (text, action) in [
            ("\"revoke\"", GrantAction::Revoke),
            ("\"restore\"", GrantAction::Restore),
        ] {
            assert_eq!(
                serde_json::from_str::<GrantAction>(text).expect("parses"),
                action
            );
            assert_eq!(serde_json::to_string(&action).expect("writes"), text);
        }
        for (text, world) in [
            ("\"detector\"", World::Detector),
            ("\"enricher\"", World::Enricher),
            ("\"responder\"", World::Responder),
        ] {
            assert_eq!(serde_json::from_str::<World>(text).expect("parses"), world);
            assert_eq!(serde_json::to_string(&world).expect("writes"), text);
        }
    }
}
