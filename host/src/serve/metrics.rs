//! `GET /metrics`: Prometheus text exposition (prometheus-client).
//!
//! Names are for the operator and label values are bounded: pack, plugin,
//! capability and outcome come from the host's own vocabulary or from
//! loaded packs; rule ids come from plugins, so at most
//! [`MAX_RULE_LABELS`] distinct ones are kept and the rest count as
//! `rule="other"`.
//!
//! | metric | labels |
//! |---|---|
//! | `vigil_events_total`, `vigil_malformed_lines_total` | |
//! | `vigil_findings_total` | pack, plugin, rule |
//! | `vigil_invocations_total` | pack, plugin, outcome (ok, error, trap, deadline) |
//! | `vigil_invocation_duration_seconds` (histogram) | pack, plugin |
//! | `vigil_denied_host_calls_total` | pack, plugin, capability |
//! | `vigil_audit_write_seconds` (histogram) | |
//! | `vigil_reloads_total` | outcome (swapped, removed, refused) |
//! | `vigil_ingest_refused_total` | reason (full, stopping) |
//! | `vigil_webhook_dropped_total` | |
//! | `vigil_ingest_queue_bytes`, `vigil_ingest_waiting_requests` (gauges) | |

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::capability::tape::CallStatus;
use crate::finding::FindingRecord;
use crate::pipeline::observe::{BatchSeen, Observer};
use crate::pipeline::record::outcome_of;

/// Distinct rule ids kept as label values.
pub const MAX_RULE_LABELS: usize = 1000;

type Labels = Vec<(String, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn call_histogram() -> Histogram {
    // 50 µs .. ~1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Every metric `vigil serve` exposes.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    events: Counter,
    malformed: Counter,
    findings: Family<Labels, Counter>,
    invocations: Family<Labels, Counter>,
    invocation_seconds: HistogramFamily,
    denied: Family<Labels, Counter>,
    audit_write: Histogram,
    reloads: Family<Labels, Counter>,
    ingest_refused: Family<Labels, Counter>,
    webhook_dropped: Counter,
    ingest_queue_bytes: Gauge<i64, AtomicI64>,
    ingest_waiting: Gauge<i64, AtomicI64>,
    rules: Mutex<BTreeSet<(String, String, String)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    (pairs.iter())
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let events = Counter::default();
        let malformed = Counter::default();
        let findings = Family::<Labels, Counter>::default();
        let invocations = Family::<Labels, Counter>::default();
        let invocation_seconds = HistogramFamily::new_with_constructor(call_histogram);
        let denied = Family::<Labels, Counter>::default();
        let audit_write = Histogram::new(exponential_buckets(0.000_01, 2.0, 18));
        let reloads = Family::<Labels, Counter>::default();
        let ingest_refused = Family::<Labels, Counter>::default();
        let webhook_dropped = Counter::default();
        let ingest_queue_bytes = Gauge::<i64, AtomicI64>::default();
        let ingest_waiting = Gauge::<i64, AtomicI64>::default();
        registry.register("vigil_events", "Events read and dispatched", events.clone());
        registry.register(
            "vigil_malformed_lines",
            "Input lines that were not events",
            malformed.clone(),
        );
        registry.register("vigil_findings", "Findings emitted", findings.clone());
        registry.register(
            "vigil_invocations",
            "Detector calls by outcome",
            invocations.clone(),
        );
        registry.register(
            "vigil_invocation_duration_seconds",
            "Wall time of a detector call, instantiation included",
            invocation_seconds.clone(),
        );
        registry.register(
            "vigil_denied_host_calls",
            "Host calls refused by a grant or revocation",
            denied.clone(),
        );
        registry.register(
            "vigil_audit_write_seconds",
            "Time to write one batch unit to the audit log",
            audit_write.clone(),
        );
        registry.register("vigil_reloads", "Pack reloads by outcome", reloads.clone());
        registry.register(
            "vigil_ingest_refused",
            "Ingest requests refused (queue full, host stopping)",
            ingest_refused.clone(),
        );
        registry.register(
            "vigil_webhook_dropped",
            "Findings the webhook sink could not deliver (queue full, or failing at stop)",
            webhook_dropped.clone(),
        );
        registry.register(
            "vigil_ingest_queue_bytes",
            "Bytes accepted by ingest and not yet in the audit log",
            ingest_queue_bytes.clone(),
        );
        registry.register(
            "vigil_ingest_waiting_requests",
            "Ingest requests waiting for their acknowledgement",
            ingest_waiting.clone(),
        );
        Metrics {
            registry,
            events,
            malformed,
            findings,
            invocations,
            invocation_seconds,
            denied,
            audit_write,
            reloads,
            ingest_refused,
            webhook_dropped,
            ingest_queue_bytes,
            ingest_waiting,
            rules: Mutex::default(),
        }
    }

    /// Count a reload outcome.
    pub fn reloaded(&self, outcome: &str) {
        self.reloads
            .get_or_create(&labels(&[("outcome", outcome)]))
            .inc();
    }

    /// Count a refused ingest request.
    pub fn ingest_refused(&self, reason: &str) {
        (self.ingest_refused)
            .get_or_create(&labels(&[("reason", reason)]))
            .inc();
    }

    /// Count findings the webhook did not deliver.
    pub fn webhook_dropped(&self, n: u64) {
        self.webhook_dropped.inc_by(n);
    }

    /// The text exposition, with the ingest gauges as of now.
    pub fn render(&self, queued_bytes: usize, waiting: usize) -> String {
        self.ingest_queue_bytes
            .set(i64::try_from(queued_bytes).unwrap_or(i64::MAX));
        self.ingest_waiting
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing to a String does not fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// The rule label for `rule`: itself while fewer than
    /// [`MAX_RULE_LABELS`] are known, else `other`.
    fn rule_label(&self, pack: &str, plugin: &str, rule: &str) -> String {
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        let key = (pack.to_owned(), plugin.to_owned(), rule.to_owned());
        if rules.contains(&key) || rules.len() < MAX_RULE_LABELS && rules.insert(key) {
            rule.to_owned()
        } else {
            "other".to_owned()
        }
    }
}

impl Observer for Metrics {
    fn batch(&self, batch: &BatchSeen<'_>) {
        self.events.inc_by(batch.events);
        self.malformed.inc_by(batch.malformed);
        self.audit_write.observe(batch.audit_write.as_secs_f64());
        for call in batch.calls {
            let (pack, plugin) = (&*call.plugin.pack, &*call.plugin.id);
            let outcome = match &call.outcome.result {
                Ok(_) => "ok",
                Err(e) => match outcome_of(e) {
                    crate::audit::record::Outcome::Ok => "ok",
                    crate::audit::record::Outcome::Error => "error",
                    crate::audit::record::Outcome::Trap => "trap",
                    crate::audit::record::Outcome::Deadline => "deadline",
                },
            };
            (self.invocations)
                .get_or_create(&labels(&[
                    ("pack", pack),
                    ("plugin", plugin),
                    ("outcome", outcome),
                ]))
                .inc();
            (self.invocation_seconds)
                .get_or_create(&labels(&[("pack", pack), ("plugin", plugin)]))
                .observe(call.outcome.elapsed.as_secs_f64());
            for host_call in &call.outcome.host_calls {
                if host_call.status == CallStatus::Denied {
                    (self.denied)
                        .get_or_create(&labels(&[
                            ("pack", pack),
                            ("plugin", plugin),
                            ("capability", &host_call.interface),
                        ]))
                        .inc();
                }
            }
        }
    }

    fn finding(&self, finding: &FindingRecord) {
        let rule = self.rule_label(&finding.pack, &finding.plugin, &finding.rule_id);
        (self.findings)
            .get_or_create(&labels(&[
                ("pack", &finding.pack),
                ("plugin", &finding.plugin),
                ("rule", &rule),
            ]))
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_labels_stop_growing_at_the_bound() {
        let metrics = Metrics::new();
        for i in 0..MAX_RULE_LABELS {
            assert_eq!(
                metrics.rule_label("p", "x", &format!("r{i}")),
                format!("r{i}")
            );
        }
        assert_eq!(metrics.rule_label("p", "x", "one-too-many"), "other");
        // Known ones keep their own label.
        assert_eq!(metrics.rule_label("p", "x", "r7"), "r7");
    }

    #[test]
    fn the_exposition_names_every_metric() {
        let metrics = Metrics::new();
        metrics.reloaded("refused");
        let text = metrics.render(42, 1);
        for name in [
            "vigil_events_total",
            "vigil_reloads_total{outcome=\"refused\"} 1",
            "vigil_ingest_queue_bytes 42",
            "vigil_ingest_waiting_requests 1",
            "vigil_audit_write_seconds_bucket",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
