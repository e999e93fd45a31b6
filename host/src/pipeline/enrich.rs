//! Enrichment workers: findings in, each pack enricher called on them, the
//! results handed back to the audit-and-emit stage (`dispatch.rs`).
//!
//! Enrichers usually wait on a remote service, so they run on their own
//! threads with their own bounds, from the operator's `[enrichment]`:
//! `workers` calls at a time and at most `queue` findings waiting.
//! Detection never waits for them: when the queue is full, the dispatcher's
//! findings leave un-enriched with that reason instead, and the emitter
//! lets a finding wait at most `wait_ms` for its enrichments. Each enricher
//! call is an ordinary plugin call (fresh instance, deadline, memory cap,
//! quarantine), so a hostile or stuck enricher costs at most its deadline
//! per finding. Errors an enricher returns (a denied or revoked `http`
//! call, a 429 or 500, a timeout it reports) do not quarantine it: only
//! misbehaviour does (see `CallError::is_misbehaviour`), so enrichment
//! comes back as soon as the service or the grant does.

use std::sync::{Arc, Mutex, mpsc};
use std::thread::Scope;
use std::time::Instant;

use crate::audit::redact::Scrub;
use crate::bindings::vigil::plugin::types::Enrichment;
use crate::finding::{EnrichmentRecord, EnrichmentResult, FindingRecord};
use crate::load::pack::Generation;
use crate::load::policy::EnrichmentConfig;
use crate::plugin_text::PluginText;
use crate::run::plugin::{Admission, CallOutcome, Enrich, LoadedPlugin};

/// A finding waiting for enrichment.
pub struct Job {
    /// Handed back in its [`Enriched`].
    pub token: u64,
    /// When the finding leaves without its enrichments: past it, calling
    /// the enrichers would only send requests whose answer nobody waits for.
    pub due: Instant,
    /// Sequence number of the batch record the finding came from.
    pub batch: u64,
    /// That batch's redaction replacements.
    pub scrub: Arc<Scrub>,
    /// The generation the finding's batch ran on: its enrichers are called.
    pub generation: Arc<Generation>,
    /// The finding, without enrichments yet.
    pub finding: FindingRecord,
}

/// A finding after every enricher ran on it.
pub struct Enriched {
    /// The token it was submitted with.
    pub token: u64,
    /// Sequence number of the batch record the finding came from.
    pub batch: u64,
    /// That batch's redaction replacements.
    pub scrub: Arc<Scrub>,
    /// The finding, without enrichments yet.
    pub finding: FindingRecord,
    /// Each enricher that was called and what happened.
    pub calls: Vec<(Arc<LoadedPlugin>, CallOutcome<Enrichment>)>,
    /// Enrichers not called (quarantined), with the reason
    /// (`quarantined until T: why`).
    pub skipped: Vec<EnrichmentRecord>,
}

/// The submitting end of the worker pool. Dropping it stops the workers
/// once the queue is empty.
pub struct Pool {
    jobs: mpsc::SyncSender<Job>,
}

impl Pool {
    /// Queue `job`; `false` when the queue is full or the workers are gone
    /// (the caller emits the finding without enrichments, saying why).
    pub fn submit(&self, job: Job) -> bool {
        self.jobs.try_send(job).is_ok()
    }
}

/// Start `config.workers()` threads in `scope`, each running the enrichers
/// of a job's generation; each finished finding goes to `deliver`, which
/// returns `false` once nobody listens any more (the worker then stops).
pub fn start<'scope>(
    scope: &'scope Scope<'scope, '_>,
    config: &EnrichmentConfig,
    deliver: impl Fn(Enriched) -> bool + Send + Sync + 'scope,
) -> Pool {
    let (jobs, queue) = mpsc::sync_channel::<Job>(config.queue());
    let queue = Arc::new(Mutex::new(queue));
    let deliver = Arc::new(deliver);
    for _ in 0..config.workers() {
        let queue = queue.clone();
        let deliver = deliver.clone();
        let worker = std::thread::Builder::new().name("vigil-enrich".into());
        worker
            .spawn_scoped(scope, move || {
                loop {
                    // Holding the lock only while waiting for the next job.
                    let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok(job) = job else { return };
                    if !deliver(enrich_one(job)) {
                        return;
                    }
                }
            })
            .expect("spawning an enrichment worker thread");
    }
    Pool { jobs }
}

/// Run every enricher of the generation on one finding.
fn enrich_one(job: Job) -> Enriched {
    let input = job.finding.to_wit();
    let mut calls = Vec::new();
    let mut skipped = Vec::new();
    for plugin in &job.generation.enrichers {
        if Instant::now() >= job.due {
            skipped.push(EnrichmentRecord {
                plugin: plugin.label(),
                result: EnrichmentResult::Unavailable {
                    reason: "not called: the finding's wait for enrichment was over before a \
                             worker was free"
                        .into(),
                },
            });
            continue;
        }
        let ticket = match plugin.admit() {
            Admission::Call(ticket) => ticket,
            Admission::Skip(reason) => {
                skipped.push(EnrichmentRecord {
                    plugin: plugin.label(),
                    result: EnrichmentResult::Unavailable { reason },
                });
                continue;
            }
        };
        let outcome = plugin.call::<Enrich>(ticket, &input);
        super::host_log::forward_logs(plugin, &outcome);
        super::host_log::log_quarantine_changes(plugin, &outcome);
        if let Err(e) = &outcome.result {
            tracing::warn!(
                "enricher {} {} (finding {} at {}:{}); the finding is emitted without it",
                plugin.label(),
                PluginText(&e.to_string()),
                PluginText(&job.finding.rule_id),
                job.finding.event.source,
                job.finding.event.line
            );
        }
        calls.push((plugin.clone(), outcome));
    }
    Enriched {
        token: job.token,
        batch: job.batch,
        scrub: job.scrub,
        finding: job.finding,
        calls,
        skipped,
    }
}
