//! The webhook sink: findings POSTed as JSON Lines to an HTTP endpoint,
//! in batches, retried with backoff, through a bounded in-memory queue.
//!
//! The audit stage hands the sink each finding after it is in the log
//! (`pipeline::sink`); the sink only enqueues, so a slow or down endpoint
//! never holds detection back. A worker thread sends up to `batch`
//! findings per request and retries a failed one (connection refused,
//! timeout, any non-2xx) after 100 ms, doubling up to 30 s, until it is
//! taken: delivery is at least once. When the queue (`max_queue`
//! findings) is full, a finding is not queued: it is counted
//! (`vigil_webhook_dropped_total`) and each batch's drops are recorded in
//! the audit log as one `sink-overflow` record, so nothing is lost
//! silently (the findings themselves are in the log's invocations). On
//! stop the worker keeps trying for `drain_ms`, then counts and records
//! what is left.
//!
//! The retry is a doubling delay in the worker's loop, not a crate: one
//! sender, one endpoint, nothing to coordinate or jitter against.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crate::audit::record::Lifecycle;
use crate::finding::FindingRecord;
use crate::load::service::WebhookConfig;
use crate::pipeline::notice::{Notice, NoticeBoard};
use crate::pipeline::sink::FindingSink;
use crate::plugin_text;

use super::metrics::Metrics;

/// First retry delay; doubles per failure up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Longest retry delay.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// The sink the audit stage writes to.
pub struct Webhook {
    url: String,
    queue: Option<mpsc::SyncSender<Vec<u8>>>,
    worker: Option<std::thread::JoinHandle<u64>>,
    dropped: u64,
    recorded: u64,
    notices: Arc<NoticeBoard>,
    metrics: Option<Arc<Metrics>>,
    sent: Arc<AtomicU64>,
    /// Set by [`Webhook::close`]: the worker's drain time starts.
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Start the worker for `config`; overflows are posted on `notices`.
    pub fn start(
        config: &WebhookConfig,
        notices: Arc<NoticeBoard>,
        metrics: Option<Arc<Metrics>>,
    ) -> io::Result<Webhook> {
        let (queue, jobs) = mpsc::sync_channel::<Vec<u8>>(config.max_queue());
        let sent = Arc::new(AtomicU64::new(0));
        let closed = Arc::new(AtomicBool::new(false));
        let worker = {
            let (url, batch, timeout) = (config.url.clone(), config.batch(), config.timeout());
            let drain = config.drain();
            let (sent, closed) = (sent.clone(), closed.clone());
            std::thread::Builder::new()
                .name("vigil-webhook".into())
                .spawn(move || deliver(&url, batch, timeout, drain, &jobs, &sent, &closed))?
        };
        Ok(Webhook {
            url: config.url.clone(),
            queue: Some(queue),
            worker: Some(worker),
            dropped: 0,
            recorded: 0,
            notices,
            metrics,
            sent,
            closed,
        })
    }

    /// Findings taken by the endpoint so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn record_drops(&mut self, why: &str) {
        if self.dropped > self.recorded {
            // From the audit stage's thread (this is its sink).
            self.notices
                .post_deferred(Notice::Lifecycle(Lifecycle::SinkOverflow {
                    sink: self.url.clone(),
                    dropped: self.dropped - self.recorded,
                    total: self.dropped,
                    reason: why.to_owned(),
                }));
            self.recorded = self.dropped;
        }
    }

    fn drop_findings(&mut self, n: u64) {
        self.dropped += n;
        if let Some(metrics) = &self.metrics {
            metrics.webhook_dropped(n);
        }
    }

    /// Stop: the worker delivers what it can within `drain_ms`; the rest
    /// is counted and recorded. Returns findings delivered in all.
    pub fn close(mut self) -> u64 {
        self.closed.store(true, Ordering::SeqCst);
        self.queue = None;
        let left = self.worker.take().map_or(0, |w| w.join().unwrap_or(0));
        if left > 0 {
            self.drop_findings(left);
        }
        self.record_drops("not delivered when the host stopped (`drain_ms`)");
        self.sent()
    }
}

impl FindingSink for Webhook {
    fn emit(&mut self, finding: &FindingRecord) -> io::Result<()> {
        let mut line = Vec::new();
        plugin_text::write_safe_json(&mut line, finding).map_err(io::Error::from)?;
        line.push(b'\n');
        let full = match &self.queue {
            Some(queue) => queue.try_send(line).is_err(),
            None => true,
        };
        if full {
            self.drop_findings(1);
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.record_drops("webhook queue full (`[serve.webhook] max_queue`)");
        Ok(())
    }
}

/// The worker: batches from `jobs` to `url` until the queue closes and is
/// empty, or `drain` after it closed. Returns findings it gave up on.
fn deliver(
    url: &str,
    batch: usize,
    timeout: Duration,
    drain: Duration,
    jobs: &mpsc::Receiver<Vec<u8>>,
    sent: &AtomicU64,
    closed: &AtomicBool,
) -> u64 {
    let agent = ureq::AgentBuilder::new().timeout(timeout).build();
    let mut closed_at: Option<Instant> = None;
    loop {
        let Ok(first) = jobs.recv() else {
            return 0;
        };
        let mut body = first;
        let mut count: usize = 1;
        while count < batch {
            match jobs.try_recv() {
                Ok(line) => {
                    body.extend_from_slice(&line);
                    count += 1;
                }
                Err(_) => break,
            }
        }
        let mut delay = FIRST_RETRY;
        loop {
            let answer = agent
                .post(url)
                .set("content-type", "application/x-ndjson")
                .send_bytes(&body);
            match answer {
                Ok(_) => {
                    sent.fetch_add(count as u64, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    tracing::warn!("webhook {url}: {e}; retrying in {delay:?}");
                }
            }
            // Past the drain time after a stop: give up on this batch and
            // whatever is still queued.
            if closed_at.is_none() && closed.load(Ordering::SeqCst) {
                closed_at = Some(Instant::now());
            }
            if closed_at.is_some_and(|t| t.elapsed() >= drain) {
                return (count + jobs.try_iter().count()) as u64;
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(MAX_RETRY);
        }
    }
}
