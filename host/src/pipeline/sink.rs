//! Where findings go: the [`FindingSink`] trait and today's sinks.
//!
//! The audit-and-emit stage hands a sink each finding only after what it
//! came from is durable in the audit log, and flushes it after each batch.
//! A sink that fails stops the run ([`super::dispatch::RunError::Output`]):
//! findings are never dropped silently. Later sinks (webhook, Kafka) keep
//! that contract by queueing durably or failing.

use std::io::{self, Write};

use crate::finding::FindingRecord;
use crate::plugin_text;

/// A destination for findings.
pub trait FindingSink: Send {
    /// Take one finding. It may be buffered until [`FindingSink::flush`].
    fn emit(&mut self, finding: &FindingRecord) -> io::Result<()>;
    /// Push out everything taken so far (called after each batch and at the
    /// end of a run).
    fn flush(&mut self) -> io::Result<()>;
}

/// Findings as JSON Lines on a writer (stdout, a file): `vigil run`'s
/// output. Plugin-controlled text is written so that it cannot break a
/// line or forge terminal output (`plugin_text::write_safe_json`).
#[derive(Debug)]
pub struct JsonLines<W> {
    out: W,
    /// One finding's line, written whole: a reader of an unbuffered `out`
    /// (a pipe, a shared buffer) never sees half a line.
    line: Vec<u8>,
}

impl<W: Write> JsonLines<W> {
    /// Write findings to `out`, one `write_all` per finding.
    pub fn new(out: W) -> Self {
        JsonLines {
            out,
            line: Vec::new(),
        }
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write + Send> FindingSink for JsonLines<W> {
    fn emit(&mut self, finding: &FindingRecord) -> io::Result<()> {
        self.line.clear();
        plugin_text::write_safe_json(&mut self.line, finding).map_err(io::Error::from)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Findings kept in memory, in emission order: `vigil test` and library
/// users that want records rather than text.
#[derive(Debug, Default)]
pub struct Memory {
    /// Every finding emitted so far.
    pub findings: Vec<FindingRecord>,
}

impl FindingSink for Memory {
    fn emit(&mut self, finding: &FindingRecord) -> io::Result<()> {
        self.findings.push(finding.clone());
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
