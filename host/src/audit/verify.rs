//! `vigil audit verify`: walk the whole chain and name the first bad record.
//!
//! Detected: an edited record (its bytes no longer hash to its `hash`), a
//! deleted or inserted record (a gap or repeat in `seq`, or a `prev` that
//! does not match), reordered records, a missing segment, a torn last
//! record, a batch unit cut short, and a log truncated below the `head`
//! anchor written after each fsync.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::chain::{self, GENESIS};
use super::segments::read_bounded;
use super::segments::{self, Peek};

/// A log that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records in the chain.
    pub records: u64,
    /// Segment files.
    pub segments: usize,
    /// Checkpoint records seen.
    pub checkpoints: u64,
    /// Hash of the last record (the value to anchor elsewhere).
    pub last_hash: String,
    /// The record the `head` anchor names, if the file exists.
    pub anchored: Option<u64>,
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {seq} ({file}, line {line}): {what}")]
pub struct VerifyError {
    /// The first bad record's sequence number (where it should be).
    pub seq: u64,
    /// The segment file.
    pub file: String,
    /// 1-based line in that file.
    pub line: u64,
    /// What is wrong.
    pub what: String,
}

#[derive(Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

/// Verify the log in `dir`.
pub fn verify(dir: &Path) -> Result<Verified, VerifyError> {
    let fail = |seq: u64, file: &Path, line: u64, what: String| VerifyError {
        seq,
        file: file.display().to_string(),
        line,
        what,
    };
    let list = segments::list(dir).map_err(|e| fail(0, dir, 0, format!("cannot list: {e}")))?;
    if list.is_empty() {
        return Err(fail(0, dir, 0, "no audit segments here".into()));
    }
    let mut expected = 1u64;
    let mut prev = GENESIS.to_owned();
    let mut checkpoints = 0;
    // (seq of the batch record, invocations still missing, file, line)
    let mut unit: Option<(u64, u32, PathBuf, u64)> = None;
    let head: Option<Head> = std::fs::read(dir.join("head"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let mut anchored_hash = None;
    for (i, (index, path)) in list.iter().enumerate() {
        if *index != i as u64 + 1 {
            return Err(fail(
                expected,
                &segments::path(dir, i as u64 + 1),
                0,
                "this segment is missing".into(),
            ));
        }
        let bytes = read_bounded(path).map_err(|e| fail(expected, path, 0, e.to_string()))?;
        for (n, line) in segments::lines(&bytes).enumerate() {
            let line_no = n as u64 + 1;
            let here = |what: String| fail(expected, path, line_no, what);
            if !line.complete {
                return Err(here(
                    "incomplete (torn write: the host died mid-record); starting vigil on this log repairs it".into(),
                ));
            }
            let envelope = chain::check_line(line.bytes).map_err(|e| here(e.to_string()))?;
            if envelope.seq > expected {
                return Err(here(format!(
                    "missing: the next record found is {} (deleted records?)",
                    envelope.seq
                )));
            }
            if envelope.seq < expected {
                return Err(here(format!(
                    "out of place: found record {} again or out of order (reordered or inserted?)",
                    envelope.seq
                )));
            }
            if envelope.prev != prev {
                return Err(here(
                    "does not chain to the record before it (a record was replaced or inserted)"
                        .into(),
                ));
            }
            if let Ok(peek) = serde_json::from_slice::<Peek>(line.bytes) {
                match (peek.kind.as_str(), peek.invocations) {
                    ("batch", Some(n)) => {
                        if let Some((seq, missing, ..)) = &unit {
                            return Err(here(format!(
                                "the batch unit at record {seq} lacks {missing} invocation record(s)"
                            )));
                        }
                        unit = (n > 0).then(|| (envelope.seq, n, path.clone(), line_no));
                    }
                    ("invocation", _) => match &mut unit {
                        Some(u) => {
                            u.1 -= 1;
                            if u.1 == 0 {
                                unit = None;
                            }
                        }
                        None => return Err(here("an invocation outside any batch unit".into())),
                    },
                    ("checkpoint", _) => checkpoints += 1,
                    _ => {}
                }
            }
            if head.as_ref().is_some_and(|h| h.seq == envelope.seq) {
                anchored_hash = Some(envelope.hash.clone());
            }
            prev = envelope.hash;
            expected += 1;
        }
    }
    let last = list.last().map(|(_, p)| p.clone()).unwrap_or_default();
    if let Some((seq, missing, file, line)) = unit {
        return Err(fail(
            seq,
            &file,
            line,
            format!("this batch unit lacks {missing} invocation record(s) at the end of the log"),
        ));
    }
    if let Some(head) = &head {
        if head.seq >= expected {
            return Err(fail(
                expected,
                &last,
                0,
                format!(
                    "missing: the log ends at record {} but record {} was written and synced (`head`): the log was truncated",
                    expected - 1,
                    head.seq
                ),
            ));
        }
        if head.seq > 0 && anchored_hash.as_deref() != Some(head.hash.as_str()) {
            return Err(fail(
                head.seq,
                &dir.join("head"),
                1,
                "differs from the hash the `head` anchor recorded when it was synced".into(),
            ));
        }
    }
    Ok(Verified {
        records: expected - 1,
        segments: list.len(),
        checkpoints,
        last_hash: prev,
        anchored: head.map(|h| h.seq),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{Lifecycle, Record};
    use crate::audit::writer::{AuditLog, WriterOptions};

    /// A log of `n` records in `dir`, synced (so `head` names the last one).
    fn log_of(n: u64, options: WriterOptions) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = AuditLog::open(dir.path(), options).expect("open");
        for i in 0..n {
            log.append(&Record::Lifecycle(Lifecycle::HostStop {
                reason: format!("record {}", i + 1),
            }))
            .expect("append");
            log.commit().expect("commit");
        }
        log.close().expect("close");
        dir
    }

    fn segment(dir: &Path) -> PathBuf {
        segments::path(dir, 1)
    }

    fn edit_lines(dir: &Path, f: impl FnOnce(&mut Vec<String>)) {
        let text = std::fs::read_to_string(segment(dir)).expect("read");
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        f(&mut lines);
        std::fs::write(segment(dir), lines.join("\n") + "\n").expect("write");
    }

    #[test]
    fn an_untouched_log_verifies_and_is_anchored() {
        let dir = log_of(5, WriterOptions::default());
        let v = verify(dir.path()).expect("verifies");
        assert_eq!((v.records, v.anchored), (5, Some(5)));
    }

    #[test]
    fn an_edited_record_fails_at_that_record() {
        let dir = log_of(5, WriterOptions::default());
        edit_lines(dir.path(), |l| l[2] = l[2].replace("record 3", "record X"));
        let e = verify(dir.path()).expect_err("edited");
        assert_eq!((e.seq, e.line), (3, 3), "{e}");
        assert!(e.what.contains("edited"), "{e}");
    }

    #[test]
    fn a_deleted_record_fails_where_it_was() {
        let dir = log_of(5, WriterOptions::default());
        edit_lines(dir.path(), |l| {
            l.remove(1);
        });
        let e = verify(dir.path()).expect_err("deleted");
        assert_eq!(e.seq, 2, "{e}");
        assert!(e.what.contains("missing"), "{e}");
    }

    #[test]
    fn reordered_records_fail_at_the_first_moved_one() {
        let dir = log_of(5, WriterOptions::default());
        edit_lines(dir.path(), |l| l.swap(2, 3));
        let e = verify(dir.path()).expect_err("reordered");
        assert_eq!(e.seq, 3, "{e}");
    }

    #[test]
    fn truncation_is_caught_mid_record_and_at_a_record_boundary() {
        let dir = log_of(5, WriterOptions::default());
        let bytes = std::fs::read(segment(dir.path())).expect("read");
        std::fs::write(segment(dir.path()), &bytes[..bytes.len() - 20]).expect("cut");
        let e = verify(dir.path()).expect_err("torn");
        assert_eq!(e.seq, 5, "{e}");

        edit_lines(dir.path(), |l| l.truncate(3));
        let e = verify(dir.path()).expect_err("records cut off");
        assert_eq!(e.seq, 4, "{e}");
        assert!(e.what.contains("truncated"), "{e}");
    }

    #[test]
    fn reopening_a_torn_log_repairs_it_with_a_record_saying_so() {
        let dir = log_of(3, WriterOptions::default());
        let mut bytes = std::fs::read(segment(dir.path())).expect("read");
        bytes.extend_from_slice(br#"{"seq":4,"time":"2026-"#);
        std::fs::write(segment(dir.path()), &bytes).expect("tear");
        AuditLog::open(dir.path(), WriterOptions::default())
            .expect("repairs")
            .close()
            .expect("close");
        let v = verify(dir.path()).expect("verifies after repair");
        assert_eq!(v.records, 4);
        let text = std::fs::read_to_string(segment(dir.path())).expect("read");
        assert!(text.contains("\"event\":\"tail-repaired\""), "{text}");
    }

    #[test]
    fn the_chain_continues_across_rotated_segments() {
        let options = WriterOptions {
            segment_bytes: 300,
            ..WriterOptions::default()
        };
        let dir = log_of(8, options);
        let v = verify(dir.path()).expect("verifies");
        assert!(v.segments > 2, "{v:?}");
        assert!(
            v.checkpoints >= v.segments as u64 - 1,
            "each new segment opens with a checkpoint"
        );
        std::fs::remove_file(segments::path(dir.path(), 2)).expect("remove a segment");
        let e = verify(dir.path()).expect_err("segment missing");
        assert!(e.what.contains("segment is missing"), "{e}");
    }
}
