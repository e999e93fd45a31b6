//! Bringing detectors' state stores forward from the audit log.
//!
//! Under the pipeline a detector's state writes reach its store only after
//! the batch's unit is in the audit log (`StateStore::gate`), so a store
//! is never ahead of the log: a host killed before a unit was written
//! loses that batch's writes with it, and the resumed run calls the
//! detectors on the batch again. A store can be behind: killed after the
//! unit was written and before the store committed (or made the commit
//! durable). The log holds every `state.set` and `state.delete` with its
//! arguments, so at start the host applies the ones recorded after the
//! store's mark (`StateStore::applied`), and the store holds exactly the
//! writes of the batches the log holds.
//!
//! Limits: a value the audit log's redaction rewrote (`[audit] redact`) is
//! brought forward as recorded; a write's time to live counts from the
//! record's time. Enrichers' stores are not gated (their calls are not
//! re-run on resume) and are not brought forward.

use std::path::Path;
use std::sync::Arc;

use crate::audit::query;
use crate::audit::record::{CallStatus, Record};
use crate::state::store::{Applied, RecordedWrite, StateStore, StateStoreError};

/// The audit log at `dir` as a store's mark names it: its canonical path.
pub fn log_id(audit: &crate::audit::Auditor) -> String {
    canonical(audit.dir())
}

fn canonical(dir: &Path) -> String {
    std::fs::canonicalize(dir)
        .unwrap_or_else(|_| dir.to_owned())
        .display()
        .to_string()
}

/// Why a store could not be brought forward.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// The log could not be read.
    #[error("reading the audit log {dir} to bring plugin state forward: {source}")]
    Read {
        /// The audit directory.
        dir: String,
        /// Why.
        source: std::io::Error,
    },
    /// The store could not be written.
    #[error("bringing the state of {plugin} forward: {source}")]
    Store {
        /// `pack/plugin`.
        plugin: String,
        /// Why.
        source: Box<StateStoreError>,
    },
}

/// A detector's store and who it belongs to.
pub struct Gated<'a> {
    /// Pack name.
    pub pack: &'a str,
    /// Plugin id.
    pub plugin: &'a str,
    /// Its store.
    pub store: &'a Arc<StateStore>,
}

/// Apply to each store the state writes the log of `audit` recorded after
/// the store's mark; gate the stores. With `redacting` (the policy's
/// `[audit.redact]` is not empty) nothing is applied: redaction rewrites
/// matching text in recorded keys and values alike, so the log's writes
/// are not the plugin's; such a host's stores may lag the log by the
/// writes a crash lost, and say so. A store without a mark for this log
/// (new, or kept under another log) is marked at the log's end, durably,
/// before anything runs: commits after it may be lost to a crash (they
/// are made durable only every `SYNC_INTERVAL`), the mark is not. Returns
/// how many writes were applied.
pub fn bring_forward(
    audit: &crate::audit::Auditor,
    redacting: bool,
    stores: &[Gated<'_>],
) -> Result<usize, RecoveryError> {
    let audit_dir = audit.dir();
    let log = canonical(audit_dir);
    let store_error = |g: &Gated<'_>, source| RecoveryError::Store {
        plugin: format!("{}/{}", g.pack, g.plugin),
        source: Box::new(source),
    };
    // Only stores whose mark names this log: another log's sequence
    // numbers mean nothing here, and a store never gated has no mark.
    let mut behind = Vec::new();
    for g in stores {
        g.store.gate();
        match g.store.applied().map_err(|e| store_error(g, e))? {
            Some(mark) if mark.log == log => behind.push((g, mark.seq, Vec::new(), mark.seq)),
            _ => {
                let mark = Applied {
                    log: log.clone(),
                    seq: audit.last_seq(),
                };
                (g.store.apply_recorded(&[], &mark)).map_err(|e| store_error(g, e))?;
            }
        }
    }
    if behind.is_empty() {
        return Ok(0);
    }
    let read = query::for_each(audit_dir, |entry, _| {
        let Record::Invocation(inv) = entry.record else {
            return;
        };
        let Some((_, _, writes, last)) = (behind.iter_mut()).find(|(g, after, ..)| {
            inv.batch > *after && g.pack == inv.pack && g.plugin == inv.plugin
        }) else {
            return;
        };
        let time_ms = humantime::parse_rfc3339_weak(&entry.time)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64);
        for call in inv.host_calls {
            if call.interface != "state" || call.status != CallStatus::Allowed {
                continue;
            }
            let text = |name: &str| call.args[name].as_str().map(str::to_owned);
            let write = match (call.function.as_str(), text("key")) {
                ("set", Some(key)) => text("value").map(|value| RecordedWrite::Set {
                    key,
                    value,
                    expires_ms: (call.args["ttl-seconds"].as_u64())
                        .map(|ttl| time_ms.saturating_add(ttl.saturating_mul(1000))),
                }),
                ("delete", Some(key)) => Some(RecordedWrite::Delete { key }),
                _ => None,
            };
            writes.extend(write);
        }
        *last = inv.batch;
    });
    read.map_err(|source| RecoveryError::Read {
        dir: log.clone(),
        source,
    })?;
    let mut applied = 0;
    for (g, after, writes, last) in behind {
        if last == after {
            continue;
        }
        if redacting {
            tracing::warn!(
                "plugin {}/{}: its state lacks {} writes the audit log recorded (a host \
                 stopped before committing them); not applied, because `[audit.redact]` \
                 may have rewritten them in the log",
                g.pack,
                g.plugin,
                writes.len()
            );
            continue;
        }
        let mark = Applied {
            log: log.clone(),
            seq: last,
        };
        (g.store.apply_recorded(&writes, &mark)).map_err(|e| store_error(g, e))?;
        tracing::info!(
            "plugin {}/{}: brought {} state writes forward from the audit log (batches after record {after})",
            g.pack,
            g.plugin,
            writes.len()
        );
        applied += writes.len();
    }
    Ok(applied)
}
