//! HTTP ingest: `POST /ingest` with an NDJSON body, answered only once the
//! batch holding its last event is in the audit log.
//!
//! Every accepted body is appended to one stream of JSON Lines (a body
//! that does not end in a newline gets one, so two requests never share a
//! line) that the pipeline reads as a live source ([`IngestSource`]):
//! batches close on size or after the linger time. A request waits for the
//! acknowledgement of the stream position just past its body, which the
//! audit stage gives as soon as the batch unit holding it is written
//! (`pipeline::source::Acknowledge`); then it gets `200 {"accepted": N}`
//! (N lines: events, and malformed lines the log records as such). An
//! acknowledged event is in the log, written to the kernel: a killed host
//! keeps it; `fdatasync` follows within `[audit] fsync_interval_ms`, so
//! only a power loss or kernel crash in that window could lose it. A
//! client that got no 2xx sends its events again.
//!
//! Bounded, never buffered without limit: a body larger than
//! `max_body_bytes` gets 413; bodies are read at most `queue_bytes /
//! max_body_bytes` at a time (others wait for their turn), and while
//! accepted-but-unrecorded bytes would exceed `queue_bytes`, requests get
//! `429` with `Retry-After: 1`; once the host is stopping, or if the
//! pipeline stopped, `503`.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::sync::{Semaphore, oneshot};
use vigil_event::Batch;

use crate::load::service::IngestConfig;
use crate::pipeline::input::{MalformedLine, RawEvents};
use crate::pipeline::position::Position;
use crate::pipeline::source::{Acknowledge, Chunks, EventSource, Lines};

use super::metrics::Metrics;

/// The source's name in findings and the audit log.
pub const SOURCE_NAME: &str = "http-ingest";

/// Accepted bodies waiting for the pipeline, at most (each also counts
/// towards `queue_bytes`).
const MAX_QUEUED_BODIES: usize = 4096;

/// The accepting half: what the HTTP handler uses.
#[derive(Debug, Clone)]
pub struct Ingest {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<Queue>,
    max_body_bytes: usize,
    queue_bytes: usize,
    /// Bodies being read at once: with the queue, memory stays within
    /// twice `queue_bytes` however many clients connect.
    reading: Semaphore,
    /// Where refusals are counted.
    metrics: Option<Arc<Metrics>>,
}

#[derive(Debug, Default)]
struct Queue {
    /// Where bodies go; `None` once the host stops accepting.
    chunks: Option<mpsc::SyncSender<io::Result<Vec<u8>>>>,
    /// Bytes of the stream so far (the end of the last accepted body).
    offset: u64,
    /// Bytes accepted and not acknowledged yet.
    queued: usize,
    /// Requests waiting for their acknowledgement, in stream order.
    waiting: VecDeque<Waiter>,
}

#[derive(Debug)]
struct Waiter {
    /// The stream offset just past the body.
    end: u64,
    bytes: usize,
    done: oneshot::Sender<()>,
}

/// Why a body was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The queue bound is reached: try again shortly.
    Full,
    /// The host is stopping.
    Stopping,
}

impl Ingest {
    /// An ingest endpoint and the pipeline source it feeds.
    pub fn new(config: &IngestConfig, metrics: Arc<Metrics>) -> (Ingest, IngestSource) {
        Ingest::build(config.max_body_bytes(), config.queue_bytes(), Some(metrics))
    }

    /// The same with explicit bounds and no metrics.
    pub fn with_limits(max_body_bytes: usize, queue_bytes: usize) -> (Ingest, IngestSource) {
        Ingest::build(max_body_bytes, queue_bytes, None)
    }

    fn build(
        max_body_bytes: usize,
        queue_bytes: usize,
        metrics: Option<Arc<Metrics>>,
    ) -> (Ingest, IngestSource) {
        let (send, receive) = mpsc::sync_channel(MAX_QUEUED_BODIES);
        let shared = Arc::new(Shared {
            state: Mutex::new(Queue {
                chunks: Some(send),
                ..Queue::default()
            }),
            max_body_bytes,
            queue_bytes,
            reading: Semaphore::new((queue_bytes / max_body_bytes.max(1)).max(1)),
            metrics,
        });
        let source = IngestSource {
            lines: Lines::from_chunks(SOURCE_NAME, Chunks::from_channel(receive)),
            shared: shared.clone(),
        };
        (Ingest { shared }, source)
    }

    /// Bytes accepted and not yet in the audit log.
    pub fn queued_bytes(&self) -> usize {
        self.lock().queued
    }

    /// Requests waiting for their acknowledgement.
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Accept `body` (its lines, newline-terminated); the receiver fires
    /// once the audit log holds all of it.
    pub fn accept(&self, mut body: Vec<u8>) -> Result<oneshot::Receiver<()>, Refusal> {
        let refused = |refusal: Refusal| {
            if let Some(metrics) = &self.shared.metrics {
                metrics.ingest_refused(match refusal {
                    Refusal::Full => "full",
                    Refusal::Stopping => "stopping",
                });
            }
            Err(refusal)
        };
        // The bound is on what the client sent: a body of exactly
        // `queue_bytes` fits even when the host adds its final newline.
        let sent = body.len();
        if body.last().is_some_and(|b| *b != b'\n') {
            body.push(b'\n');
        }
        let (done, receiver) = oneshot::channel();
        let mut queue = self.lock();
        let Some(chunks) = &queue.chunks else {
            return refused(Refusal::Stopping);
        };
        if queue.queued + sent > self.shared.queue_bytes {
            return refused(Refusal::Full);
        }
        let bytes = body.len();
        match chunks.try_send(Ok(body)) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => return refused(Refusal::Full),
            Err(mpsc::TrySendError::Disconnected(_)) => return refused(Refusal::Stopping),
        }
        queue.offset += bytes as u64;
        queue.queued += bytes;
        let end = queue.offset;
        queue.waiting.push_back(Waiter { end, bytes, done });
        Ok(receiver)
    }

    /// Stop accepting: the source ends once what was accepted is read.
    pub fn close(&self) {
        self.lock().chunks = None;
    }

    /// The run is over: nothing more is accepted, and requests still
    /// waiting get `503` (their events may not be in the log; the client
    /// sends them again).
    pub fn abandon(&self) {
        abandon(&self.shared);
    }

    /// `POST /ingest`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/ingest", post(ingest))
            // Enforced where the body is read (`to_bytes`), once the
            // request has its turn to read one.
            .layer(DefaultBodyLimit::disable())
            .with_state(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn ingest(State(ingest): State<Ingest>, body: axum::body::Body) -> Response {
    // One body read at a time per `max_body_bytes` of queue.
    let Ok(_reading) = ingest.shared.reading.acquire().await else {
        return stopping();
    };
    let body: Bytes = match axum::body::to_bytes(body, ingest.shared.max_body_bytes).await {
        Ok(body) => body,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "body over {} bytes (`[serve.ingest] max_body_bytes`), or cut short; \
                     send smaller bodies\n",
                    ingest.shared.max_body_bytes
                ),
            )
                .into_response();
        }
    };
    let lines = body.iter().filter(|b| **b == b'\n').count()
        + usize::from(body.last().is_some_and(|b| *b != b'\n'));
    if lines == 0 {
        return (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "accepted": 0 })),
        )
            .into_response();
    }
    let receiver = match ingest.accept(Vec::from(body)) {
        Ok(receiver) => receiver,
        Err(Refusal::Full) => {
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                "the ingest queue is full (`[serve.ingest] queue_bytes`); retry after 1 s\n",
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
        Err(Refusal::Stopping) => return stopping(),
    };
    match receiver.await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "accepted": lines })),
        )
            .into_response(),
        Err(_) => stopping(),
    }
}

fn stopping() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the host is stopping; these events were not acknowledged, send them again\n",
    )
        .into_response()
}

/// The pipeline's side: accepted bodies as one live JSON Lines stream.
#[derive(Debug)]
pub struct IngestSource {
    lines: Lines<Chunks>,
    shared: Arc<Shared>,
}

impl EventSource for IngestSource {
    fn name(&self) -> &str {
        self.lines.name()
    }

    fn fill(
        &mut self,
        batch: &mut Batch,
        size: usize,
        linger: Duration,
        malformed: &mut Vec<MalformedLine>,
    ) -> io::Result<bool> {
        self.lines.fill(batch, size, linger, malformed)
    }

    fn position(&self) -> Position {
        self.lines.position()
    }

    fn take_raw(&mut self, spare: RawEvents) -> RawEvents {
        self.lines.take_raw(spare)
    }

    fn acknowledger(&mut self) -> Box<dyn Acknowledge> {
        Box::new(Acks {
            shared: self.shared.clone(),
        })
    }
}

/// The audit stage's end: answers requests as their bodies are recorded.
/// Dropped when the audit stage stops, normally or on an error: then
/// nothing more is accepted and whoever still waits gets `503`, so a
/// stopped pipeline never leaves a request (or a graceful stop) hanging.
struct Acks {
    shared: Arc<Shared>,
}

impl Acknowledge for Acks {
    fn ack(&mut self, through: Position) {
        let mut queue = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        while (queue.waiting.front()).is_some_and(|w| w.end <= through.offset) {
            let waiter = queue.waiting.pop_front().expect("checked");
            queue.queued = queue.queued.saturating_sub(waiter.bytes);
            // The client may have gone; its events are recorded anyway.
            let _ = waiter.done.send(());
        }
    }
}

impl Drop for Acks {
    fn drop(&mut self) {
        abandon(&self.shared);
    }
}

/// Stop accepting and answer every waiting request `503`.
fn abandon(shared: &Shared) {
    let mut queue = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    queue.chunks = None;
    queue.waiting.clear();
    queue.queued = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_acknowledged_only_once_the_stream_position_past_it_is() {
        let (ingest, mut source) = Ingest::with_limits(1024, 4096);
        let mut first = ingest
            .accept(b"{\"a\":1}\n{\"a\":2}".to_vec())
            .expect("accepted");
        let mut second = ingest.accept(b"{\"a\":3}\n".to_vec()).expect("accepted");
        let mut ack = source.acknowledger();
        // Through the first body's first line only: nobody is answered.
        ack.ack(Position { offset: 8, line: 1 });
        assert!(first.try_recv().is_err());
        // The newline the host added belongs to the first body.
        ack.ack(Position {
            offset: 16,
            line: 2,
        });
        assert!(first.try_recv().is_ok());
        assert!(second.try_recv().is_err());
        assert_eq!(ingest.queued_bytes(), 8);
        ack.ack(Position {
            offset: 24,
            line: 3,
        });
        assert!(second.try_recv().is_ok());
        assert_eq!(ingest.queued_bytes(), 0);
    }

    #[test]
    fn past_the_queue_bound_a_body_is_refused_and_nothing_is_queued() {
        let (ingest, _source) = Ingest::with_limits(64, 20);
        let _held = ingest
            .accept(b"{\"a\":1}\n{\"a\":2}\n".to_vec())
            .expect("16 bytes fit");
        assert_eq!(
            ingest.accept(b"{\"a\":3}\n".to_vec()).err(),
            Some(Refusal::Full)
        );
        assert_eq!(ingest.queued_bytes(), 16);
        ingest.close();
        assert_eq!(
            ingest.accept(b"{}\n".to_vec()).err(),
            Some(Refusal::Stopping)
        );
    }

    #[test]
    fn when_the_audit_stage_stops_waiting_requests_are_answered_and_no_more_accepted() {
        let (ingest, mut source) = Ingest::with_limits(1024, 4096);
        let mut waiting = ingest.accept(b"{\"a\":1}\n".to_vec()).expect("accepted");
        let ack = source.acknowledger();
        drop(ack);
        assert!(
            matches!(
                waiting.try_recv(),
                Err(oneshot::error::TryRecvError::Closed)
            ),
            "the request is told (503), not left waiting"
        );
        assert_eq!(
            ingest.accept(b"{}\n".to_vec()).err(),
            Some(Refusal::Stopping)
        );
        assert_eq!(ingest.waiting(), 0);
    }

    #[test]
    fn a_body_of_exactly_the_queue_size_fits_without_its_final_newline() {
        let (ingest, _source) = Ingest::with_limits(8, 8);
        let _held = ingest
            .accept(b"{\"a\":1}".to_vec())
            .expect("8 bytes sent fit");
    }

    #[test]
    fn the_source_reads_every_accepted_body_as_lines_then_ends_when_closed() {
        let (ingest, mut source) = Ingest::with_limits(1024, 4096);
        let _a = ingest.accept(b"{\"a\":1}".to_vec()).expect("accepted");
        let _b = ingest.accept(b"{\"a\":2}\n".to_vec()).expect("accepted");
        ingest.close();
        let mut batch = Batch::new();
        let mut malformed = Vec::new();
        let mut ids = Vec::new();
        while source
            .fill(&mut batch, 10, Duration::from_millis(5), &mut malformed)
            .expect("reads")
        {
            ids.extend(batch.frames().iter().map(|f| f.id));
        }
        assert_eq!(ids, [1, 2]);
        assert!(malformed.is_empty(), "{malformed:?}");
    }
}
