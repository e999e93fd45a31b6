//! Where events come from: the [`EventSource`] trait and today's sources
//! (a file, standard input, bytes in memory).
//!
//! The pipeline treats a source's [`Position`] as opaque: it takes one
//! before and after each batch, records both in the audit log and hands
//! the end to the source's [`Acknowledge`] once the batch unit is durable
//! there. A source whose position lives elsewhere (a Kafka offset, a
//! followed file's cursor, an HTTP request waiting for its answer) commits
//! it there, so nothing acknowledged upstream is missing from the log.
//! Files and stdin need no acknowledgement: a resumed run finds its place
//! in the audit log (`audit::resume`).
//!
//! A batch closes when it holds `size` events or, on a live source, when
//! `linger` has passed since its first event and no further line is ready,
//! so a slow producer's event is never held back waiting for more.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vigil_event::Batch;

use super::input::{BatchReader, MalformedLine, RawEvents};
pub use super::position::Position;

/// How long a live source's batch waits for more events after its first,
/// unless the policy says otherwise (`batch_linger_ms`).
pub const DEFAULT_LINGER: Duration = Duration::from_millis(5);

/// A stream of JSON Lines events read in batches.
pub trait EventSource {
    /// The source's name in findings and the audit log; a resumed run
    /// matches on it.
    fn name(&self) -> &str;

    /// Clear `batch` and fill it with up to `size` events; malformed lines
    /// go to `malformed`. A live source closes the batch early once
    /// `linger` has passed since its first event with no line ready.
    /// Returns `false` once the source is exhausted and nothing was read
    /// (a batch of only blank or malformed lines is still a batch: its
    /// position is recorded and acknowledged).
    fn fill(
        &mut self,
        batch: &mut Batch,
        size: usize,
        linger: Duration,
        malformed: &mut Vec<MalformedLine>,
    ) -> io::Result<bool>;

    /// Where the source stands: after the last line [`EventSource::fill`]
    /// read.
    fn position(&self) -> Position;

    /// The original lines of the last batch's events (see
    /// [`BatchReader::take_raw`]).
    fn take_raw(&mut self, spare: RawEvents) -> RawEvents;

    /// Who is told when batches are durable. Taken once when a run starts
    /// and called on the audit stage's thread as soon as each batch is in
    /// the log, so an acknowledgement never waits for the source's next
    /// event. The default tells nobody.
    fn acknowledger(&mut self) -> Box<dyn Acknowledge> {
        Box::new(|_: Position| {})
    }
}

/// Told that everything up to `through` is in the audit log (written to
/// the kernel, so a killed host keeps it; `fdatasync` follows within
/// `[audit] fsync_interval_ms`) or, in a run without one, emitted. Called
/// in order, at most once per batch.
pub trait Acknowledge: Send {
    /// Everything up to `through` is durable.
    fn ack(&mut self, through: Position);
}

impl<F: FnMut(Position) + Send> Acknowledge for F {
    fn ack(&mut self, through: Position) {
        self(through)
    }
}

/// A source of JSON Lines over a reader. Over a reader that never waits
/// long for data (a regular file, bytes in memory) a batch closes when it
/// is full; over [`Chunks`] (a live source: standard input, a FIFO, read on
/// a thread of its own, [`Lines::live`]) also after its linger time.
#[derive(Debug)]
pub struct Lines<R> {
    name: String,
    reader: BatchReader<R>,
    /// A live reader's "is a whole line ready by then?".
    ready_by: Option<fn(&mut R, Instant) -> bool>,
}

impl<R: BufRead> Lines<R> {
    /// Read `reader` from its start under `name`.
    pub fn new(name: impl Into<String>, reader: R) -> Self {
        Lines::at(name, BatchReader::new(reader))
    }

    /// Read from a `reader` already advanced to `from` (a resumed run).
    pub fn at(name: impl Into<String>, reader: BatchReader<R>) -> Self {
        Lines {
            name: name.into(),
            reader,
            ready_by: None,
        }
    }
}

/// A source over a reader that may wait for its producer.
pub type Live = Lines<Chunks>;

impl Lines<Chunks> {
    /// Read `reader` on its own thread under `name`, so a batch can close
    /// after its linger time instead of waiting for a full batch.
    pub fn live(name: impl Into<String>, reader: impl Read + Send + 'static) -> io::Result<Self> {
        let name = name.into();
        let chunks = Chunks::spawn(&name, reader)?;
        Ok(Lines::from_chunks(name, chunks))
    }

    /// Bytes a producer of the host's own sends as `chunks`, batched as
    /// a live source (closing after the linger time).
    pub fn from_chunks(name: impl Into<String>, chunks: Chunks) -> Self {
        Lines {
            ready_by: Some(Chunks::ready_by),
            ..Lines::new(name, chunks)
        }
    }

    /// Standard input.
    pub fn stdin() -> io::Result<Self> {
        Lines::live("-", io::stdin())
    }
}

impl<R: BufRead> EventSource for Lines<R> {
    fn name(&self) -> &str {
        &self.name
    }

    fn fill(
        &mut self,
        batch: &mut Batch,
        size: usize,
        linger: Duration,
        malformed: &mut Vec<MalformedLine>,
    ) -> io::Result<bool> {
        let Some(ready_by) = self.ready_by else {
            return self.reader.fill(batch, size, malformed);
        };
        let mut closes_at = None;
        (self.reader).fill_while(batch, size, malformed, |reader, lines| {
            if lines == 0 {
                return true; // The first line is worth any wait.
            }
            let until = *closes_at.get_or_insert_with(|| Instant::now() + linger);
            ready_by(reader, until)
        })
    }

    fn position(&self) -> Position {
        self.reader.position()
    }

    fn take_raw(&mut self, spare: RawEvents) -> RawEvents {
        self.reader.take_raw(spare)
    }
}

/// Open the events file at `path` under `name`, skipping to `from` (a
/// resumed run). A regular file is read directly; anything else (a FIFO,
/// `/dev/stdin`) as a live source.
pub fn open_file(
    path: &Path,
    name: &str,
    from: Option<Position>,
) -> io::Result<Box<dyn EventSource>> {
    let file = File::open(path)?;
    let from_pos = from.unwrap_or_default();
    if !file.metadata()?.is_file() {
        if from.is_some() {
            return Err(io::Error::other(
                "only a regular file can be resumed; send the unrecorded lines again",
            ));
        }
        return Ok(Box::new(Lines::live(name, file)?));
    }
    let mut reader = BufReader::new(file);
    let skipped = io::copy(&mut (&mut reader).take(from_pos.offset), &mut io::sink())?;
    if skipped < from_pos.offset {
        return Err(io::Error::other(format!(
            "it has {skipped} bytes, fewer than the {} the interrupted run had read: \
             was it truncated or replaced? Move the audit log aside to read it from the start",
            from_pos.offset
        )));
    }
    Ok(Box::new(Lines::at(name, BatchReader::at(reader, from_pos))))
}

/// Bytes from a reader running on its own thread, as a [`BufRead`] that can
/// also say whether data arrives before a deadline.
#[derive(Debug)]
pub struct Chunks {
    incoming: mpsc::Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    consumed: usize,
    ended: bool,
    /// A read error seen by [`Chunks::ready_by`], returned by the next read.
    pending_error: Option<io::Error>,
}

/// How much a live source's reader thread reads at once.
const CHUNK_BYTES: usize = 64 * 1024;

/// Chunks read ahead of the batcher: bounded, so a fast producer waits
/// for the pipeline instead of filling memory.
const CHUNKS_AHEAD: usize = 16;

impl Chunks {
    /// Bytes sent on `incoming` by a producer of the host's own (HTTP
    /// ingest); the source ends when every sender is dropped.
    pub fn from_channel(incoming: mpsc::Receiver<io::Result<Vec<u8>>>) -> Self {
        Chunks {
            incoming,
            current: Vec::new(),
            consumed: 0,
            ended: false,
            pending_error: None,
        }
    }

    fn spawn(name: &str, mut reader: impl Read + Send + 'static) -> io::Result<Self> {
        let (send, incoming) = mpsc::sync_channel(CHUNKS_AHEAD);
        std::thread::Builder::new()
            .name(format!("vigil-read {name}"))
            .spawn(move || {
                loop {
                    let mut chunk = vec![0; CHUNK_BYTES];
                    let sent = match reader.read(&mut chunk) {
                        Ok(0) => return,
                        Ok(n) => {
                            chunk.truncate(n);
                            send.send(Ok(chunk))
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            let _ = send.send(Err(e));
                            return;
                        }
                    };
                    // The run is over: stop reading.
                    if sent.is_err() {
                        return;
                    }
                }
            })?;
        Ok(Chunks::from_channel(incoming))
    }

    /// Whether a whole line is buffered or arrives (or the input ends)
    /// before `until`. A line's first half alone is not ready: reading it
    /// would wait for the rest, past the linger.
    fn ready_by(&mut self, until: Instant) -> bool {
        loop {
            let buffered = &self.current[self.consumed..];
            if self.ended || self.pending_error.is_some() || buffered.contains(&b'\n') {
                return true;
            }
            match (self.incoming).recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(Ok(chunk)) => {
                    // Keep the unread part, then the new bytes: a line's
                    // start is never dropped.
                    self.current.drain(..self.consumed);
                    self.current.extend_from_slice(&chunk);
                    self.consumed = 0;
                }
                // The error is returned by the next read.
                Ok(Err(e)) => self.pending_error = Some(e),
                Err(mpsc::RecvTimeoutError::Timeout) => return false,
                Err(mpsc::RecvTimeoutError::Disconnected) => self.ended = true,
            }
        }
    }
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Chunks {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        while self.consumed == self.current.len() && !self.ended {
            match self.incoming.recv() {
                Ok(Ok(chunk)) => {
                    self.current = chunk;
                    self.consumed = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(mpsc::RecvError) => self.ended = true,
            }
        }
        Ok(&self.current[self.consumed..])
    }

    fn consume(&mut self, amount: usize) {
        self.consumed = (self.consumed + amount).min(self.current.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A pipe whose writer the test holds: a live producer.
    fn live_pair() -> (Live, std::io::PipeWriter) {
        let (reader, writer) = std::io::pipe().expect("pipe");
        (Lines::live("pipe", reader).expect("reader thread"), writer)
    }

    #[test]
    fn a_live_batch_closes_after_its_linger_without_waiting_for_more_events() {
        let (mut source, mut producer) = live_pair();
        producer
            .write_all(b"{\"a\":1}\n{\"a\":2}\n")
            .expect("write");
        let mut batch = Batch::new();
        let mut malformed = Vec::new();
        // The producer stays open: a full batch of 256 would wait forever.
        let more =
            (source.fill(&mut batch, 256, Duration::from_millis(5), &mut malformed)).expect("read");
        assert!(more);
        assert_eq!(
            batch.frames().iter().map(|f| f.id).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(source.position().line, 2);
        // Later lines go in the next batch, numbered on.
        producer.write_all(b"{\"a\":3}\nnot json\n").expect("write");
        drop(producer);
        assert!(
            (source.fill(&mut batch, 256, Duration::from_millis(5), &mut malformed)).expect("read")
        );
        assert_eq!(batch.frames().iter().map(|f| f.id).collect::<Vec<_>>(), [3]);
        assert_eq!(malformed.iter().map(|m| m.line).collect::<Vec<_>>(), [4]);
        assert!(
            !(source.fill(&mut batch, 256, Duration::from_millis(5), &mut malformed))
                .expect("read")
        );
    }

    #[test]
    fn a_live_batch_of_only_malformed_lines_closes_after_its_linger_too() {
        let (mut source, mut producer) = live_pair();
        producer.write_all(b"not json\n\n").expect("write");
        let mut batch = Batch::new();
        let mut malformed = Vec::new();
        // The producer stays open: before, this waited for an event.
        let more =
            (source.fill(&mut batch, 256, Duration::from_millis(5), &mut malformed)).expect("read");
        assert!(
            more,
            "a batch of lines that are not events is still a batch"
        );
        assert!(batch.is_empty());
        assert_eq!(malformed.iter().map(|m| m.line).collect::<Vec<_>>(), [1]);
        assert_eq!(source.position().line, 2);
        drop(producer);
        assert!(
            !(source.fill(&mut batch, 256, Duration::from_millis(5), &mut malformed))
                .expect("read")
        );
    }

    #[test]
    fn half_a_line_does_not_hold_back_the_events_before_it() {
        let (mut source, mut producer) = live_pair();
        // A block-buffered producer flushed mid-line, then paused.
        producer.write_all(b"{\"a\":1}\n{\"a\":").expect("write");
        let mut batch = Batch::new();
        let mut malformed = Vec::new();
        let more =
            (source.fill(&mut batch, 256, Duration::from_millis(5), &mut malformed)).expect("read");
        assert!(more);
        assert_eq!(batch.frames().iter().map(|f| f.id).collect::<Vec<_>>(), [1]);
        // The rest of the line arrives: nothing of it was lost.
        producer.write_all(b"2}\n").expect("write");
        drop(producer);
        assert!(
            (source.fill(&mut batch, 256, Duration::from_millis(5), &mut malformed)).expect("read")
        );
        assert_eq!(batch.frames().iter().map(|f| f.id).collect::<Vec<_>>(), [2]);
        assert!(malformed.is_empty(), "{malformed:?}");
    }

    #[test]
    fn a_live_batch_still_closes_at_its_size() {
        let (mut source, mut producer) = live_pair();
        producer
            .write_all("{\"a\":1}\n".repeat(5).as_bytes())
            .expect("write");
        drop(producer);
        let mut batch = Batch::new();
        let mut malformed = Vec::new();
        let mut sizes = Vec::new();
        while (source.fill(&mut batch, 2, Duration::from_secs(3600), &mut malformed)).expect("read")
        {
            sizes.push(batch.len());
        }
        assert_eq!(sizes, [2, 2, 1]);
    }

    #[test]
    fn a_file_source_resumes_at_a_recorded_position() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n").expect("write");
        let from = Position { offset: 8, line: 1 };
        let mut source = open_file(&path, "events", Some(from)).expect("open");
        let mut batch = Batch::new();
        let mut malformed = Vec::new();
        assert!(
            source
                .fill(&mut batch, 10, DEFAULT_LINGER, &mut malformed)
                .expect("read")
        );
        assert_eq!(
            batch.frames().iter().map(|f| f.id).collect::<Vec<_>>(),
            [2, 3]
        );
        assert_eq!(
            source.position(),
            Position {
                offset: 24,
                line: 3
            }
        );
    }
}
