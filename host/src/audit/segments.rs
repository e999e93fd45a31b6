//! Segment files of an audit directory: naming, listing, reading lines,
//! and finding where a torn tail starts.

use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::chain::{self, GENESIS};
use super::error::AuditError;

/// Path of segment `index` (`00000001.jsonl`, ...).
pub fn path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index:08}.jsonl"))
}

/// The segments in `dir`, in order.
pub fn list(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let index = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".jsonl"))
            .filter(|n| n.len() == 8)
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(index) = index {
            out.push((index, path));
        }
    }
    out.sort();
    Ok(out)
}

/// One line of a segment.
#[derive(Debug)]
pub struct Line<'a> {
    /// Byte offset of the line in its segment.
    pub offset: u64,
    /// The line without its newline.
    pub bytes: &'a [u8],
    /// False for a last line with no newline (a torn write).
    pub complete: bool,
}

/// Split a segment's bytes into lines.
pub fn lines(bytes: &[u8]) -> impl Iterator<Item = Line<'_>> {
    let mut offset = 0usize;
    std::iter::from_fn(move || {
        if offset >= bytes.len() {
            return None;
        }
        let rest = &bytes[offset..];
        let (line, complete, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], true, offset + i + 1),
            None => (rest, false, bytes.len()),
        };
        let item = Line {
            offset: offset as u64,
            bytes: line,
            complete,
        };
        offset = next;
        Some(item)
    })
}

/// Just enough of a record to follow batch units and grant-change ids.
#[derive(Deserialize)]
pub(crate) struct Peek {
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) invocations: Option<u32>,
    /// A lifecycle record's event.
    #[serde(default)]
    pub(crate) event: Option<String>,
    /// A grant-change record's change id.
    #[serde(default)]
    pub(crate) change: Option<u64>,
    /// A checkpoint's highest grant-change id.
    #[serde(default)]
    pub(crate) last_grant_change: Option<u64>,
}

impl Peek {
    /// The highest grant-change id this record tells of, if any.
    fn grant_change(&self) -> Option<u64> {
        match (self.kind.as_str(), self.event.as_deref()) {
            ("lifecycle", Some("grant-change")) => self.change,
            ("checkpoint", _) => Some(self.last_grant_change.unwrap_or(0)),
            _ => None,
        }
    }
}

/// Where the log ends and what must be cut to make it end cleanly.
#[derive(Debug)]
pub(crate) struct Tail {
    pub(crate) seq: u64,
    pub(crate) hash: String,
    /// Bytes of the last segment to keep.
    pub(crate) good_len: u64,
    pub(crate) repair: Option<Repair>,
    /// Highest grant-change id in the log (0: none).
    pub(crate) last_grant_change: u64,
}

#[derive(Debug)]
pub(crate) struct Repair {
    pub(crate) bytes_removed: u64,
    pub(crate) records_removed: u64,
    pub(crate) reason: String,
}

/// A batch unit whose invocation records have not all been seen yet.
struct OpenUnit {
    /// Byte offset of its batch record.
    start: u64,
    /// Invocation records still missing.
    missing: u32,
    /// Records of the unit seen so far.
    records: u64,
    /// Seq and hash of the record before the unit.
    before: Option<(u64, String)>,
    /// Highest grant-change id seen before the unit.
    grant_change_before: Option<u64>,
}

/// Scan the last segment `last` of `dir` (listed in `all`) for its final
/// complete unit.
pub(crate) fn scan_tail(
    dir: &Path,
    last: &Path,
    all: &[(u64, PathBuf)],
) -> Result<Tail, AuditError> {
    let bytes = read_bounded(last).map_err(|source| AuditError::Io {
        path: last.to_owned(),
        action: "reading the last segment",
        source,
    })?;
    let mut end: Option<(u64, String)> = None;
    let mut good_len = 0u64;
    let mut cut: Option<String> = None;
    let mut unit: Option<OpenUnit> = None;
    let mut grant_change: Option<u64> = None;
    let mut all_lines = lines(&bytes).peekable();
    while let Some(line) = all_lines.next() {
        let is_last = all_lines.peek().is_none();
        let checked = if line.complete {
            chain::check_line(line.bytes).map_err(|e| e.to_string())
        } else {
            Err("the last line has no newline".to_owned())
        };
        let envelope = match checked {
            Ok(envelope) => envelope,
            Err(why) if is_last => {
                cut = Some(format!(
                    "record after {} is incomplete: {why}",
                    end.as_ref().map_or(0, |e| e.0)
                ));
                break;
            }
            Err(why) => {
                return Err(AuditError::Damaged {
                    path: dir.to_owned(),
                    seq: end.as_ref().map_or(0, |e| e.0) + 1,
                    why,
                });
            }
        };
        let peek: Option<Peek> = serde_json::from_slice(line.bytes).ok();
        if let Some(id) = peek.as_ref().and_then(Peek::grant_change) {
            grant_change = Some(grant_change.unwrap_or(0).max(id));
        }
        match peek {
            Some(Peek {
                kind,
                invocations: Some(n),
                ..
            }) if kind == "batch" => {
                unit = (n > 0).then(|| OpenUnit {
                    start: line.offset,
                    missing: n,
                    records: 1,
                    before: end.clone(),
                    grant_change_before: grant_change,
                });
            }
            Some(Peek { kind, .. }) if kind == "invocation" => {
                if let Some(u) = &mut unit {
                    u.missing -= 1;
                    u.records += 1;
                    if u.missing == 0 {
                        unit = None;
                    }
                }
            }
            _ => {}
        }
        end = Some((envelope.seq, envelope.hash));
        good_len = line.offset + line.bytes.len() as u64 + 1;
    }
    let mut records_removed = 0;
    if let Some(OpenUnit {
        start,
        missing,
        records,
        before,
        grant_change_before,
    }) = unit
    {
        grant_change = grant_change_before;
        let note = format!("a batch unit lacks {missing} invocation record(s)");
        cut = Some(match cut {
            Some(why) => format!("{why}; {note}"),
            None => note,
        });
        good_len = start;
        records_removed = records;
        end = before;
    }
    let end = match end {
        Some(end) => end,
        None => previous_end(dir, last, all)?,
    };
    let last_grant_change = match grant_change {
        Some(id) => id,
        None => previous_grant_change(last, all)?,
    };
    Ok(Tail {
        seq: end.0,
        hash: end.1,
        last_grant_change,
        good_len,
        repair: cut.map(|reason| Repair {
            bytes_removed: bytes.len() as u64 - good_len,
            records_removed,
            reason,
        }),
    })
}

/// Highest grant-change id in the segments before `last`: read backwards
/// until a segment tells (every segment after the first opens with a
/// checkpoint that does).
fn previous_grant_change(last: &Path, all: &[(u64, PathBuf)]) -> Result<u64, AuditError> {
    let end = all.iter().position(|(_, p)| p == last).unwrap_or(all.len());
    for (_, path) in all[..end].iter().rev() {
        let bytes = read_bounded(path).map_err(|source| AuditError::Io {
            path: path.clone(),
            action: "reading a segment",
            source,
        })?;
        let found = (lines(&bytes).filter(|l| l.complete))
            .filter_map(|l| serde_json::from_slice::<Peek>(l.bytes).ok())
            .filter_map(|p| p.grant_change())
            .max();
        if let Some(id) = found {
            return Ok(id);
        }
    }
    Ok(0)
}

/// Seq and hash of the last record before segment `last`.
fn previous_end(
    dir: &Path,
    last: &Path,
    all: &[(u64, PathBuf)],
) -> Result<(u64, String), AuditError> {
    let Some(pos) = all.iter().position(|(_, p)| p == last) else {
        return Ok((0, GENESIS.to_owned()));
    };
    let Some((_, prev)) = pos.checked_sub(1).map(|i| &all[i]) else {
        return Ok((0, GENESIS.to_owned()));
    };
    let bytes = read_bounded(prev).map_err(|source| AuditError::Io {
        path: prev.clone(),
        action: "reading the previous segment",
        source,
    })?;
    let last_line = lines(&bytes).filter(|l| l.complete).last();
    match last_line.map(|l| chain::check_line(l.bytes)) {
        Some(Ok(envelope)) => Ok((envelope.seq, envelope.hash)),
        Some(Err(e)) => Err(AuditError::Damaged {
            path: dir.to_owned(),
            seq: 0,
            why: format!("last record of {}: {e}", prev.display()),
        }),
        None => previous_end(dir, prev, all),
    }
}

/// Read a file fully, but never more than its length when opened: a
/// character device such as `/dev/full` reads as empty.
pub(crate) fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut bytes)?;
    Ok(bytes)
}
