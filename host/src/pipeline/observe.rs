//! What a long-running host counts: an [`Observer`] the audit stage tells
//! about every batch it recorded and every finding it emitted, on its own
//! thread, after the log write. `vigil serve` turns these into Prometheus
//! metrics (`serve/metrics.rs`); a run without an observer pays nothing.

use std::time::Duration;

use crate::finding::FindingRecord;

use super::record::PluginCall;

/// One batch as the audit stage recorded it.
#[derive(Debug)]
pub struct BatchSeen<'a> {
    /// Events in the batch.
    pub events: u64,
    /// Lines that were not events.
    pub malformed: u64,
    /// Every detector call on it.
    pub calls: &'a [PluginCall],
    /// How long writing its unit to the audit log took (zero without one).
    pub audit_write: Duration,
}

/// Told what the pipeline did. Every method has an empty default.
pub trait Observer: Send + Sync {
    /// A batch unit is in the log (or, without one, was handled).
    fn batch(&self, batch: &BatchSeen<'_>) {
        let _ = batch;
    }

    /// A finding went to the sink.
    fn finding(&self, finding: &FindingRecord) {
        let _ = finding;
    }
}
