//! `vigil audit verify|show|stats` and `vigil replay`: commands over the audit log.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use vigil::audit::{query, verify};
use vigil::plugin_text::PluginText;

use super::settings::audit_dir;
use super::{AuditCommand, HostArgs};

/// `vigil audit verify|show|stats`.
pub(crate) fn audit_command(
    command: AuditCommand,
    audit: Option<PathBuf>,
    host: &HostArgs,
) -> Result<ExitCode> {
    let dir = audit_dir(audit, host)?;
    let reading = || format!("reading the audit log {}", dir.display());
    match command {
        AuditCommand::Verify => match verify::verify(&dir) {
            Ok(v) => {
                println!(
                    "ok: {} records in {} segment(s), {} checkpoint(s); last hash {}{}",
                    v.records,
                    v.segments,
                    v.checkpoints,
                    v.last_hash,
                    v.anchored
                        .map(|a| format!("; head anchor at record {a}"))
                        .unwrap_or_default()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                println!("FAILED: {}", PluginText(&e.to_string()));
                Ok(ExitCode::FAILURE)
            }
        },
        AuditCommand::Show {
            plugin,
            since,
            finding,
            json,
        } => {
            let filter = query::Filter {
                plugin,
                since,
                finding,
                record: None,
            };
            let stdout = io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            let mut result = Ok(());
            query::for_each(&dir, |entry, raw| {
                if result.is_err() || !filter.matches(&entry) {
                    return;
                }
                result = if json {
                    out.write_all(raw).and_then(|()| out.write_all(b"\n"))
                } else {
                    writeln!(out, "{}", query::describe(&entry))
                };
            })
            .with_context(reading)?;
            result?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Stats => {
            let stats = query::stats(&dir).with_context(reading)?;
            println!(
                "{:<32} {:>11} {:>9} {:>7} {:>9} {:>8}  host calls",
                "plugin", "invocations", "events", "errors", "findings", "denials"
            );
            for (plugin, s) in stats {
                let calls: Vec<String> = s
                    .host_calls
                    .iter()
                    .map(|(cap, n)| format!("{cap} {n}"))
                    .collect();
                // Enrichers see findings, not events: say what became of them.
                let enricher = s.enriched + s.unavailable > 0;
                let (events, findings, outcome) = if enricher {
                    (
                        "-".to_owned(),
                        "-".to_owned(),
                        format!("  ({} enriched, {} unavailable)", s.enriched, s.unavailable),
                    )
                } else {
                    (s.events.to_string(), s.findings.to_string(), String::new())
                };
                println!(
                    "{plugin:<32} {:>11} {events:>9} {:>7} {findings:>9} {:>8}  {}{outcome}",
                    s.invocations,
                    s.errors,
                    s.denials,
                    if calls.is_empty() {
                        "none".to_owned()
                    } else {
                        calls.join(", ")
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `vigil replay`: re-run recorded invocations and compare.
pub(crate) fn replay_command(
    record: Option<u64>,
    plugin: Option<String>,
    since: Option<SystemTime>,
    audit: Option<PathBuf>,
    host: &HostArgs,
) -> Result<ExitCode> {
    let dir = audit_dir(audit, host)?;
    let engine = vigil::load::engine::build_engine().map_err(anyhow::Error::from)?;
    let selection = vigil::replay::Selection {
        record,
        plugin,
        since,
    };
    let results = vigil::replay::replay(&engine, &dir, &selection)
        .with_context(|| format!("reading the audit log {}", dir.display()))?;
    let mut counts = [0usize; 3];
    for r in &results {
        use vigil::replay::Verdict;
        let (i, text) = match &r.verdict {
            Verdict::Identical => (0, "identical".to_owned()),
            Verdict::Mismatch(why) => (1, format!("MISMATCH: {}", PluginText(why))),
            Verdict::NotReplayable(why) => (2, format!("not replayable: {}", PluginText(why))),
        };
        counts[i] += 1;
        println!(
            "#{} {}: {text} ({} findings, {} host calls)",
            r.record, r.plugin, r.findings, r.host_calls
        );
    }
    println!(
        "{} identical, {} mismatched, {} not replayable",
        counts[0], counts[1], counts[2]
    );
    if results.is_empty() {
        bail!("no invocation in {} matches the selection", dir.display());
    }
    Ok(if counts[1] == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
