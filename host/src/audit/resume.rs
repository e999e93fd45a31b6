//! Where an interrupted run continues.
//!
//! A `vigil run --input FILE` opens with a `run-start` record and closes
//! with `run-end`; each batch record carries the byte offset and line after
//! it. If the last run over a source has a start but no end (the host was
//! killed), the next run over it starts where that run's last committed
//! batch ended, so every event gets exactly one invocation per plugin. A
//! run that ended normally is not resumed: running a file again re-reads it.

use std::path::Path;

use serde::Deserialize;

use super::record::Position;
use super::segments;
use super::segments::read_bounded;

#[derive(Deserialize)]
struct Peek {
    kind: String,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    end: Option<Position>,
    #[serde(default)]
    from: Option<Position>,
}

/// The position an interrupted run over `source` reached, if the last run
/// over it did not finish.
pub fn interrupted_position(dir: &Path, source: &str) -> std::io::Result<Option<Position>> {
    if !dir.exists() {
        return Ok(None);
    }
    let mut open: Option<Position> = None;
    for (_, path) in segments::list(dir)? {
        let bytes = read_bounded(&path)?;
        for line in segments::lines(&bytes).filter(|l| l.complete) {
            let Ok(peek) = serde_json::from_slice::<Peek>(line.bytes) else {
                continue;
            };
            if peek.source.as_deref() != Some(source) {
                continue;
            }
            match (peek.kind.as_str(), peek.event.as_deref()) {
                ("lifecycle", Some("run-start")) => open = Some(peek.from.unwrap_or_default()),
                ("lifecycle", Some("run-end")) => open = None,
                ("batch", _) if open.is_some() => open = peek.end.or(open),
                _ => {}
            }
        }
    }
    Ok(open)
}
