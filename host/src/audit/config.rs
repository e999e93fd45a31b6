//! `[audit]` of the operator's policy: the audit log's own settings,
//! defined here so that the log does not depend on the policy module (which
//! embeds this section).

use std::path::PathBuf;

use serde::Deserialize;

/// `[audit]`: where and how the audit log is written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Audit directory (default `<state_dir>/audit`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// How batch events are recorded (default `full`).
    #[serde(default)]
    pub inputs: InputMode,
    /// Longest wait for `fdatasync` after a commit, ms (default 10; 0 syncs
    /// on every commit).
    #[serde(default)]
    pub fsync_interval_ms: Option<u64>,
    /// Segment size in MiB before rotation (default 64).
    #[serde(default)]
    pub segment_mb: Option<u64>,
    /// Records between checkpoint records (default 10000).
    #[serde(default)]
    pub checkpoint_every: Option<u64>,
    /// Event fields removed or hashed before anything is written.
    #[serde(default)]
    pub redact: RedactConfig,
}

/// How events are recorded in batch records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputMode {
    /// The event itself (after redaction) and its SHA-256: replayable.
    #[default]
    Full,
    /// Only the SHA-256 of each event line: not replayable.
    Digest,
}

/// `[audit.redact]`: dotted event paths.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactConfig {
    /// Fields removed from recorded events; their values are replaced by
    /// `[redacted]` wherever else they appear.
    #[serde(default)]
    pub drop: Vec<String>,
    /// Fields replaced by `sha256:<16 hex>` of their value, everywhere.
    #[serde(default)]
    pub hash: Vec<String>,
}
