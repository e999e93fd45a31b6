//! Reading events: JSON Lines from a file or stdin, encoded into batches.
//!
//! Events are untrusted. A line that is not a JSON object, is not UTF-8 or
//! is longer than [`MAX_EVENT_BYTES`] is reported with its line number and
//! counted; it never stops the run. Blank lines are not events and are
//! skipped.

use std::io::{self, BufRead, Read};

use super::position::Position;
use vigil_event::Batch;

/// Longest accepted event line, in bytes.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// A batch closes early once its encoded events reach this many bytes, so
/// that large events cannot make one batch outgrow a plugin's memory cap
/// (64 MiB by default) or the 4 GiB a batch's frame offsets can address.
pub const MAX_BATCH_BYTES: usize = 8 << 20;

/// A line that was not an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedLine {
    /// 1-based line number.
    pub line: u64,
    /// Why it was rejected.
    pub reason: String,
}

/// The original lines of one batch's events, owned, so the audit stage can
/// record them while the next batch is being read.
#[derive(Debug, Default)]
pub struct RawEvents {
    data: Vec<u8>,
    spans: Vec<(u64, usize, usize)>,
}

impl RawEvents {
    /// Number of events.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// `(event id, original line)` of every event.
    pub fn events(&self) -> Vec<(u64, &[u8])> {
        self.spans
            .iter()
            .map(|&(id, start, end)| (id, &self.data[start..end]))
            .collect()
    }
}

/// Reads JSON Lines and fills batches.
#[derive(Debug)]
pub struct BatchReader<R> {
    reader: R,
    line_no: u64,
    offset: u64,
    line: Vec<u8>,
    /// The original lines of the current batch's events, for the audit log.
    raw: Vec<u8>,
    raw_spans: Vec<(u64, usize, usize)>,
}

impl<R: BufRead> BatchReader<R> {
    /// Read from `reader`, numbering lines from 1.
    pub fn new(reader: R) -> Self {
        Self::at(reader, Position::default())
    }

    /// Read from `reader`, which the caller has already advanced to `from`
    /// (a resumed run): line numbers and offsets continue from there.
    pub fn at(reader: R, from: Position) -> Self {
        BatchReader {
            reader,
            line_no: from.line,
            offset: from.offset,
            line: Vec::new(),
            raw: Vec::new(),
            raw_spans: Vec::new(),
        }
    }

    /// Lines consumed so far.
    pub fn lines_read(&self) -> u64 {
        self.line_no
    }

    /// Bytes and lines consumed so far.
    pub fn position(&self) -> Position {
        Position {
            offset: self.offset,
            line: self.line_no,
        }
    }

    /// Take the original lines of the last batch's events (for the audit
    /// log), leaving `spare` (a buffer handed back by a previous taker, or
    /// an empty one) for the next batch. Reusing buffers matters: a batch's
    /// lines are a few hundred KiB, above malloc's mmap threshold, so a
    /// fresh buffer per batch costs page faults on every batch.
    pub fn take_raw(&mut self, spare: RawEvents) -> RawEvents {
        let mut spare = spare;
        spare.data.clear();
        spare.spans.clear();
        RawEvents {
            data: std::mem::replace(&mut self.raw, spare.data),
            spans: std::mem::replace(&mut self.raw_spans, spare.spans),
        }
    }

    /// Clear `batch` and fill it with up to `size` events (fewer once it
    /// holds [`MAX_BATCH_BYTES`]). Malformed lines go to `malformed`.
    /// Returns `false` once the input is exhausted and the batch is empty.
    pub fn fill(
        &mut self,
        batch: &mut Batch,
        size: usize,
        malformed: &mut Vec<MalformedLine>,
    ) -> io::Result<bool> {
        self.fill_while(batch, size, malformed, |_, _| true)
    }

    /// [`BatchReader::fill`], asking `ready(reader, lines so far)` before
    /// each line and closing the batch when it says no (a live source's
    /// linger, `source.rs`). Lines count whether they were events,
    /// malformed or blank: a live batch of only malformed lines closes on
    /// its linger too, so what they acknowledge is never held back.
    /// Returns whether any line was read.
    pub fn fill_while(
        &mut self,
        batch: &mut Batch,
        size: usize,
        malformed: &mut Vec<MalformedLine>,
        mut ready: impl FnMut(&mut R, usize) -> bool,
    ) -> io::Result<bool> {
        batch.clear();
        self.raw.clear();
        self.raw_spans.clear();
        let mut lines = 0;
        while batch.len() < size
            && batch.wire().len() < MAX_BATCH_BYTES
            && ready(&mut self.reader, lines)
        {
            self.line.clear();
            // Bounded read: a hostile multi-gigabyte line cannot exhaust memory.
            let n = (&mut self.reader)
                .take(MAX_EVENT_BYTES as u64 + 1)
                .read_until(b'\n', &mut self.line)?;
            if n == 0 {
                break;
            }
            self.line_no += 1;
            self.offset += n as u64;
            lines += 1;
            if self.line.last() != Some(&b'\n') && self.line.len() > MAX_EVENT_BYTES {
                let skipped = self.skip_rest_of_line()?;
                self.offset += skipped as u64;
                malformed.push(MalformedLine {
                    line: self.line_no,
                    reason: format!(
                        "event is {} bytes, over the {MAX_EVENT_BYTES}-byte limit",
                        n + skipped
                    ),
                });
                continue;
            }
            let text = self.line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            match batch.push_json(self.line_no, text) {
                Ok(()) => {
                    let start = self.raw.len();
                    self.raw.extend_from_slice(text);
                    self.raw_spans.push((self.line_no, start, self.raw.len()));
                }
                Err(e) => malformed.push(MalformedLine {
                    line: self.line_no,
                    reason: e.to_string(),
                }),
            }
        }
        Ok(lines > 0)
    }

    fn skip_rest_of_line(&mut self) -> io::Result<usize> {
        let mut skipped = 0;
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Ok(skipped);
            }
            match buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.reader.consume(i + 1);
                    return Ok(skipped + i + 1);
                }
                None => {
                    let len = buf.len();
                    self.reader.consume(len);
                    skipped += len;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &str, size: usize) -> (Vec<Vec<u64>>, Vec<MalformedLine>) {
        let mut reader = BatchReader::new(input.as_bytes());
        let mut batch = Batch::new();
        let mut malformed = Vec::new();
        let mut batches = Vec::new();
        while reader
            .fill(&mut batch, size, &mut malformed)
            .expect("in-memory read")
        {
            batches.push(batch.frames().iter().map(|f| f.id).collect());
        }
        (batches, malformed)
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number_and_the_rest_still_flows() {
        let input = "{\"a\":1}\nnot json\n\n[1,2]\n{\"b\":2}\n{\"c\":3}";
        let (batches, malformed) = read_all(input, 2);
        assert_eq!(batches, vec![vec![1, 5], vec![6]]);
        assert_eq!(
            malformed.iter().map(|m| m.line).collect::<Vec<_>>(),
            vec![2, 4]
        );
        assert!(
            malformed[0].reason.contains("invalid JSON"),
            "{:?}",
            malformed[0]
        );
        assert!(
            malformed[1].reason.contains("JSON object"),
            "{:?}",
            malformed[1]
        );
    }

    #[test]
    fn an_oversized_line_is_skipped_without_losing_the_next_one() {
        let big = format!("{{\"x\":\"{}\"}}", "a".repeat(MAX_EVENT_BYTES + 10));
        let input = format!("{big}\n{{\"ok\":true}}\n");
        let (batches, malformed) = read_all(&input, 10);
        assert_eq!(batches, vec![vec![2]]);
        assert_eq!(malformed.len(), 1);
        assert_eq!(malformed[0].line, 1);
        assert!(malformed[0].reason.contains("limit"));
    }

    #[test]
    fn invalid_utf8_is_malformed_not_fatal() {
        let mut input = b"{\"a\":\"".to_vec();
        input.extend_from_slice(&[0xff, 0xfe]);
        input.extend_from_slice(b"\"}\n{\"b\":1}\n");
        let mut reader = BatchReader::new(&input[..]);
        let mut batch = Batch::new();
        let mut malformed = Vec::new();
        assert!(reader.fill(&mut batch, 10, &mut malformed).expect("read"));
        assert_eq!(batch.len(), 1);
        assert_eq!(malformed[0].line, 1);
    }

    #[test]
    fn large_events_close_a_batch_early_and_none_is_lost() {
        let big = format!("{{\"x\":\"{}\"}}\n", "a".repeat(MAX_EVENT_BYTES - 100));
        let count = MAX_BATCH_BYTES / MAX_EVENT_BYTES + 3;
        let input = big.repeat(count);
        let mut reader = BatchReader::new(input.as_bytes());
        let mut batch = Batch::new();
        let mut malformed = Vec::new();
        let mut ids = Vec::new();
        let mut batches = 0;
        while reader.fill(&mut batch, 256, &mut malformed).expect("read") {
            batches += 1;
            assert!(
                batch.wire().len() < MAX_BATCH_BYTES + MAX_EVENT_BYTES,
                "{} bytes",
                batch.wire().len()
            );
            ids.extend(batch.frames().iter().map(|f| f.id));
        }
        assert!(malformed.is_empty(), "{malformed:?}");
        assert_eq!(batches, 2);
        assert_eq!(ids, (1..=count as u64).collect::<Vec<_>>());
    }
}
