//! `vigil audit show` and `vigil audit stats`: reading the log back.

use crate::plugin_text::PluginText;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

use serde::Deserialize;

use super::record::{CallStatus, ChangeKind, GenerationRef, Lifecycle, Outcome, Record};
use super::segments;
use super::segments::read_bounded;

/// One parsed line.
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    /// Sequence number.
    pub seq: u64,
    /// When it was written (RFC 3339).
    pub time: String,
    /// The record.
    #[serde(flatten)]
    pub record: Record,
}

/// Which records `show` prints.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only invocations of this plugin id (and lifecycle records naming it).
    pub plugin: Option<String>,
    /// Only records written at or after this time.
    pub since: Option<SystemTime>,
    /// Only invocations with a finding of this rule id.
    pub finding: Option<String>,
    /// Only this record.
    pub record: Option<u64>,
}

impl Filter {
    /// Whether `entry` passes.
    pub fn matches(&self, entry: &Entry) -> bool {
        if self.record.is_some_and(|r| r != entry.seq) {
            return false;
        }
        if let Some(since) = self.since {
            match humantime::parse_rfc3339_weak(&entry.time) {
                Ok(t) if t >= since => {}
                _ => return false,
            }
        }
        match &entry.record {
            Record::Invocation(inv) => {
                self.plugin.as_ref().is_none_or(|p| *p == inv.plugin)
                    && self
                        .finding
                        .as_ref()
                        .is_none_or(|rule| inv.findings.iter().any(|f| f.rule_id == *rule))
            }
            Record::Enrichment(inv) => {
                self.plugin.as_ref().is_none_or(|p| *p == inv.plugin)
                    && self
                        .finding
                        .as_ref()
                        .is_none_or(|rule| inv.input.as_ref().is_some_and(|f| f.rule_id == *rule))
            }
            Record::Lifecycle(
                Lifecycle::Quarantine { plugin, .. }
                | Lifecycle::QuarantineProbe { plugin, .. }
                | Lifecycle::QuarantineLifted { plugin, .. }
                | Lifecycle::GrantChange { plugin, .. },
            ) => {
                self.finding.is_none()
                    && self
                        .plugin
                        .as_ref()
                        .is_none_or(|p| p == plugin || plugin.ends_with(&format!("/{p}")))
            }
            _ => self.plugin.is_none() && self.finding.is_none(),
        }
    }
}

/// Call `f` on every record of the log in order, with its raw line.
/// Lines that do not parse (a torn tail) are skipped; `verify` reports them.
pub fn for_each(dir: &Path, mut f: impl FnMut(Entry, &[u8])) -> std::io::Result<()> {
    for (_, path) in segments::list(dir)? {
        let bytes = read_bounded(&path)?;
        for line in segments::lines(&bytes).filter(|l| l.complete) {
            if let Ok(entry) = serde_json::from_slice::<Entry>(line.bytes) {
                f(entry, line.bytes);
            }
        }
    }
    Ok(())
}

/// One human-readable line for `entry`.
pub fn describe(entry: &Entry) -> String {
    let mut out = format!("#{} {} ", entry.seq, entry.time);
    match &entry.record {
        Record::Lifecycle(l) => {
            let _ = match l {
                Lifecycle::HostStart {
                    version,
                    pid,
                    command,
                } => {
                    write!(out, "host start: vigil {version} pid {pid} `{command}`")
                }
                Lifecycle::HostStop { reason } => write!(out, "host stop: {reason}"),
                Lifecycle::PackLoad {
                    pack,
                    version,
                    generation,
                    source,
                    plugins,
                } => {
                    let _ = write!(
                        out,
                        "pack load: {pack} {version} generation {generation} from {source}:"
                    );
                    for p in plugins {
                        let caps: Vec<_> = p.grant_set.effective.iter().map(|c| c.name()).collect();
                        // How its instances start, and what `init` read then.
                        let init = p.init.as_ref().map_or(String::new(), |i| {
                            let reads: Vec<String> = (i.host_calls.iter())
                                .map(|c| {
                                    format!(
                                        "{}.{}({}) {:?}",
                                        c.interface, c.function, c.args, c.status
                                    )
                                })
                                .collect();
                            format!(
                                ", init {}{}",
                                i.mode.name(),
                                if reads.is_empty() {
                                    String::new()
                                } else {
                                    format!(" [{}]", reads.join("; "))
                                }
                            )
                        });
                        let _ = write!(
                            out,
                            " {} ({}, grants [{}], component {}{})",
                            PluginText(&p.id),
                            p.world.name(),
                            caps.join(", "),
                            &p.component[..12],
                            PluginText(&init)
                        );
                    }
                    Ok(())
                }
                Lifecycle::PackRefused { source, reasons } => {
                    write!(
                        out,
                        "pack refused: {source}: {}",
                        PluginText(&reasons.join("; "))
                    )
                }
                Lifecycle::GenerationChange {
                    pack,
                    trigger,
                    from,
                    to,
                    plugins,
                } => {
                    let name = |g: &Option<GenerationRef>| {
                        g.as_ref().map_or("none".to_owned(), |g| {
                            format!("generation {} ({})", g.generation, PluginText(&g.version))
                        })
                    };
                    let changes: Vec<String> = (plugins.iter())
                        .filter(|p| p.change != ChangeKind::Unchanged)
                        .map(|p| {
                            let mut text = format!("{} {}", PluginText(&p.plugin), p.change.name());
                            for c in &p.capabilities_added {
                                let _ = write!(text, " +{c}");
                            }
                            for c in &p.capabilities_removed {
                                let _ = write!(text, " -{c}");
                            }
                            text
                        })
                        .collect();
                    write!(
                        out,
                        "generation change: {pack} {} -> {} ({}): {}",
                        name(from),
                        name(to),
                        PluginText(trigger),
                        if changes.is_empty() {
                            "no plugin changed".to_owned()
                        } else {
                            changes.join(", ")
                        }
                    )
                }
                Lifecycle::SinkOverflow {
                    sink,
                    dropped,
                    total,
                    reason,
                } => write!(
                    out,
                    "sink overflow: {sink}: {dropped} findings not delivered ({total} in all): {reason}"
                ),
                Lifecycle::ReloadRefused {
                    source,
                    trigger,
                    kept,
                    reasons,
                    ..
                } => write!(
                    out,
                    "reload refused: {source} ({}), {} stays current: {}",
                    PluginText(trigger),
                    kept.as_ref().map_or("nothing".to_owned(), |g| format!(
                        "generation {}",
                        g.generation
                    )),
                    PluginText(&reasons.join("; "))
                ),
                Lifecycle::Quarantine {
                    pack,
                    plugin,
                    reason,
                    until,
                    backoff_ms,
                } => {
                    let until = match (until, backoff_ms) {
                        (Some(until), Some(ms)) => {
                            format!(
                                " until {until} (back-off {})",
                                humantime::format_duration(std::time::Duration::from_millis(*ms))
                            )
                        }
                        (Some(until), None) => format!(" until {until}"),
                        _ => String::new(),
                    };
                    write!(
                        out,
                        "QUARANTINE {}/{}{until}: {}",
                        PluginText(pack),
                        PluginText(plugin),
                        PluginText(reason)
                    )
                }
                Lifecycle::QuarantineProbe {
                    pack,
                    plugin,
                    reason,
                } => write!(
                    out,
                    "QUARANTINE PROBE {}/{}: back-off over, the next invocation probes it (quarantined for: {})",
                    PluginText(pack),
                    PluginText(plugin),
                    PluginText(reason)
                ),
                Lifecycle::QuarantineLifted {
                    pack,
                    plugin,
                    reason,
                } => write!(
                    out,
                    "QUARANTINE LIFTED {}/{}: {}",
                    PluginText(pack),
                    PluginText(plugin),
                    PluginText(reason)
                ),
                Lifecycle::GrantChange {
                    action,
                    plugin,
                    capability,
                    reason,
                    by,
                    requested_at,
                    note,
                    change,
                } => write!(
                    out,
                    "GRANT {} {} of {} by {} (asked {}): {}{}{}",
                    action.name().to_uppercase(),
                    capability.map_or("every capability", |c| c.name()),
                    PluginText(plugin),
                    PluginText(by),
                    requested_at,
                    PluginText(reason),
                    note.as_deref()
                        .map(|n| format!(" [{}]", PluginText(n)))
                        .unwrap_or_default(),
                    change.map(|c| format!(" (change {c})")).unwrap_or_default()
                ),
                Lifecycle::RevocationsInForce { revocations } => {
                    let _ = write!(out, "revocations in force:");
                    for r in revocations {
                        let _ = write!(
                            out,
                            " {} of {} (by {} at {}: {});",
                            r.what(),
                            PluginText(&r.plugin),
                            PluginText(&r.by),
                            r.at,
                            PluginText(&r.reason)
                        );
                    }
                    Ok(())
                }
                Lifecycle::RunStart {
                    source,
                    from,
                    resumed,
                } => write!(
                    out,
                    "run start: {source}{}",
                    if *resumed {
                        format!(" (resumed after line {}, byte {})", from.line, from.offset)
                    } else {
                        String::new()
                    }
                ),
                Lifecycle::RunEnd {
                    source,
                    events,
                    findings,
                    errors,
                    ..
                } => write!(
                    out,
                    "run end: {source}: {events} events, {findings} findings, {errors} errors"
                ),
                Lifecycle::TailRepaired {
                    segment,
                    bytes_removed,
                    records_removed,
                    reason,
                    ..
                } => write!(
                    out,
                    "torn tail repaired in {segment}: cut {bytes_removed} bytes ({records_removed} complete records of an unfinished unit): {reason}"
                ),
            };
        }
        Record::Batch(b) => {
            let first = b.start.line + 1;
            let _ = write!(
                out,
                "batch {} lines {first}-{}: {} events, {} malformed, {} invocations",
                b.source,
                b.end.line,
                b.events.len(),
                b.malformed.len(),
                b.invocations
            );
        }
        Record::Invocation(inv) => {
            if inv.probe {
                out.push_str("probe ");
            }
            let denied = inv
                .host_calls
                .iter()
                .filter(|c| c.status == CallStatus::Denied)
                .count();
            let _ = write!(
                out,
                "invocation {}/{} on batch #{}: {:?}, {} findings, {} host calls ({} denied), {:.3} ms",
                inv.pack,
                inv.plugin,
                inv.batch,
                inv.outcome,
                inv.findings.len(),
                inv.host_calls.len(),
                denied,
                inv.duration_us as f64 / 1000.0
            );
            if let Some(e) = &inv.error {
                let _ = write!(out, ": {}", PluginText(e));
            }
            for f in &inv.findings {
                let _ = write!(
                    out,
                    "\n    finding {} [{}] line {}: {}",
                    PluginText(&f.rule_id),
                    f.severity,
                    f.event.line,
                    PluginText(&f.title)
                );
            }
        }
        Record::Enrichment(inv) => {
            let _ = write!(
                out,
                "enrichment {}/{}: {:?}, {} host calls ({} denied), {:.3} ms",
                inv.pack,
                inv.plugin,
                inv.outcome,
                inv.host_calls.len(),
                (inv.host_calls.iter())
                    .filter(|c| c.status == CallStatus::Denied)
                    .count(),
                inv.duration_us as f64 / 1000.0
            );
            if let Some(f) = &inv.input {
                let _ = write!(
                    out,
                    "\n    of finding {} line {} (batch #{})",
                    PluginText(&f.rule_id),
                    f.event.line,
                    inv.batch
                );
            }
            match (&inv.enrichment, &inv.error) {
                (
                    Some(crate::finding::EnrichmentResult::Enriched {
                        priority, summary, ..
                    }),
                    _,
                ) => {
                    let _ = write!(
                        out,
                        "\n    -> [{}] {}",
                        PluginText(priority),
                        PluginText(summary)
                    );
                }
                (_, Some(e)) => {
                    let _ = write!(out, "\n    -> not enriched: {}", PluginText(e));
                }
                _ => {}
            }
            for call in inv.host_calls.iter().filter(|c| c.detail.is_some()) {
                let _ = write!(
                    out,
                    "\n    {}.{} {:?}: {}",
                    call.interface,
                    call.function,
                    call.status,
                    PluginText(call.detail.as_deref().unwrap_or_default())
                );
            }
        }
        Record::Checkpoint(c) => {
            let _ = write!(
                out,
                "checkpoint: {} records, segment {}",
                c.records, c.segment
            );
        }
    }
    out
}

/// Per-plugin counters for `vigil audit stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginStats {
    /// Invocation records.
    pub invocations: u64,
    /// Events across those invocations' batches.
    pub events: u64,
    /// Invocations that did not end `ok`.
    pub errors: u64,
    /// Findings.
    pub findings: u64,
    /// Host calls refused by the grant.
    pub denials: u64,
    /// Enrichers: findings they enriched.
    pub enriched: u64,
    /// Enrichers: findings they could not enrich (error, denial, timeout).
    pub unavailable: u64,
    /// Host calls by capability (those of `init` at load included).
    pub host_calls: BTreeMap<String, u64>,
}

/// Counters per `pack/plugin`.
pub fn stats(dir: &Path) -> std::io::Result<BTreeMap<String, PluginStats>> {
    let mut out: BTreeMap<String, PluginStats> = BTreeMap::new();
    let mut batch_sizes: BTreeMap<u64, u64> = BTreeMap::new();
    for_each(dir, |entry, _| match entry.record {
        Record::Batch(b) => {
            batch_sizes.insert(entry.seq, b.events.len() as u64);
        }
        // Host calls `init` made when the pack loaded (the snapshot run):
        // counted with the plugin's calls, as the plugin made them.
        Record::Lifecycle(Lifecycle::PackLoad { pack, plugins, .. }) => {
            for p in plugins {
                let s = out.entry(format!("{pack}/{}", p.id)).or_default();
                for call in p.init.iter().flat_map(|i| &i.host_calls) {
                    *s.host_calls.entry(call.interface.clone()).or_default() += 1;
                    s.denials += u64::from(call.status == CallStatus::Denied);
                }
            }
        }
        Record::Invocation(inv) | Record::Enrichment(inv) => {
            let s = out
                .entry(format!("{}/{}", inv.pack, inv.plugin))
                .or_default();
            if inv.input.is_some() {
                match &inv.enrichment {
                    Some(crate::finding::EnrichmentResult::Enriched { .. }) => s.enriched += 1,
                    _ => s.unavailable += 1,
                }
            }
            s.invocations += 1;
            if inv.input.is_none() {
                s.events += batch_sizes.get(&inv.batch).copied().unwrap_or(0);
            }
            s.errors += u64::from(inv.outcome != Outcome::Ok);
            s.findings += inv.findings.len() as u64;
            for call in &inv.host_calls {
                *s.host_calls.entry(call.interface.clone()).or_default() += 1;
                s.denials += u64::from(call.status == CallStatus::Denied);
            }
        }
        _ => {}
    })?;
    Ok(out)
}
