//! What one call of a plugin runs under: deadline, memory cap, output
//! bounds, quarantine thresholds. Resolved from the operator's policy at
//! load (`load::policy`), recorded with the pack load, rebuilt for replay.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Resolved limits for one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget per call.
    pub deadline: Duration,
    /// Linear memory cap per instance, in bytes.
    pub memory_bytes: u64,
    /// Most findings one call may return.
    pub max_findings_per_batch: usize,
    /// Most bytes one call's findings (or one enrichment) may take as emitted JSON.
    pub max_output_bytes: usize,
    /// Consecutive misbehaving calls before quarantine.
    pub quarantine_after: u32,
    /// Back-off of a first quarantine (doubled per failed probe).
    pub quarantine: Duration,
    /// Log records allowed per call.
    pub log_records_per_call: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_millis(250),
            memory_bytes: 64 << 20,
            max_findings_per_batch: 10_000,
            max_output_bytes: 4 << 20,
            quarantine_after: 3,
            quarantine: Duration::from_secs(30),
            log_records_per_call: 100,
        }
    }
}

/// The resolved limits of a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsRecord {
    /// Wall-clock budget per call, milliseconds.
    pub deadline_ms: u64,
    /// Memory cap, bytes.
    pub memory_bytes: u64,
    /// Most findings per call.
    pub max_findings_per_batch: usize,
    /// Most bytes of finding text per call.
    pub max_output_bytes: usize,
    /// Consecutive misbehaving calls before quarantine.
    pub quarantine_after: u32,
    /// Back-off of a first quarantine, milliseconds (30 s in logs written
    /// before it was configurable).
    #[serde(default = "default_quarantine_ms")]
    pub quarantine_ms: u64,
    /// Log records per call.
    pub log_records_per_call: usize,
}

fn default_quarantine_ms() -> u64 {
    30_000
}

impl From<Limits> for LimitsRecord {
    fn from(l: Limits) -> Self {
        LimitsRecord {
            deadline_ms: l.deadline.as_millis() as u64,
            memory_bytes: l.memory_bytes,
            max_findings_per_batch: l.max_findings_per_batch,
            max_output_bytes: l.max_output_bytes,
            quarantine_after: l.quarantine_after,
            quarantine_ms: l.quarantine.as_millis() as u64,
            log_records_per_call: l.log_records_per_call,
        }
    }
}

impl From<LimitsRecord> for Limits {
    fn from(l: LimitsRecord) -> Self {
        Limits {
            deadline: Duration::from_millis(l.deadline_ms),
            memory_bytes: l.memory_bytes,
            max_findings_per_batch: l.max_findings_per_batch,
            max_output_bytes: l.max_output_bytes,
            quarantine_after: l.quarantine_after,
            quarantine: Duration::from_millis(l.quarantine_ms),
            log_records_per_call: l.log_records_per_call,
        }
    }
}
