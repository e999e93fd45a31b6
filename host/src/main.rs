//! The `vigil` command line.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use std::time::SystemTime;

use vigil::artifacts;
use vigil::audit::{query, verify};
use vigil::host::{Host, HostOptions};
use vigil::pack::PackSource;
use vigil::pipeline::sink::JsonLines;
use vigil::pipeline::source::{self, EventSource, Lines};
use vigil::plugin_text::{PluginLines, PluginText};
use vigil::policy::Policy;
use vigil::preinit::InitMode;
use vigil::revocation::{self, Action, ChangeRequest, Recorded};
use vigil::runtime::Runtime;

/// Host for sandboxed WebAssembly detection plugins.
///
/// Plugins reach only the capabilities the operator policy grants them.
/// With no options, `vigil run` runs the bundled starter pack on its bundled
/// sample events.
#[derive(Debug, Parser)]
#[command(name = "vigil", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run events through a pack's detectors and print findings as JSON Lines.
    Run {
        /// Pack directory (holding pack.toml); repeat it to run several
        /// packs on the same events. Default: the embedded starter pack.
        #[arg(long = "pack", value_name = "PACK")]
        packs: Vec<PathBuf>,
        /// JSON Lines events, or `-` for stdin. Default: the starter pack's sample events.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Where to write findings. Default: stdout.
        #[arg(long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        host: HostArgs,
        /// Events per plugin call (overrides `batch_size` in the policy).
        #[arg(long)]
        batch_size: Option<usize>,
        /// Audit log directory (default: `[audit] path`, else STATE_DIR/audit).
        /// A run over a file that was interrupted resumes after the last
        /// batch this log recorded.
        #[arg(long)]
        audit: Option<PathBuf>,
    },
    /// Read, check and summarize the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
        /// Audit log directory (default: `[audit] path`, else STATE_DIR/audit).
        #[arg(long, global = true)]
        audit: Option<PathBuf>,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Re-run recorded invocations from the audit log alone and report,
    /// per invocation, whether host calls and findings are identical.
    /// Exits 1 if any differs.
    Replay {
        /// Only this invocation record (its `seq`).
        #[arg(long, conflicts_with_all = ["plugin", "since"])]
        record: Option<u64>,
        /// Only invocations of this plugin id.
        #[arg(long)]
        plugin: Option<String>,
        /// Only records since this time: RFC 3339 (`2026-11-22T10:00:00Z`) or an age (`15m`, `2h`).
        #[arg(long, value_parser = parse_since)]
        since: Option<SystemTime>,
        /// Audit log directory (default: `[audit] path`, else STATE_DIR/audit).
        #[arg(long)]
        audit: Option<PathBuf>,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Validate a pack without running it: manifest, components, imports vs grants.
    Check {
        /// Pack directory. Default: the embedded starter pack.
        pack: Option<PathBuf>,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Show the world, exports and imported interfaces of a component.
    Inspect {
        /// The component (.wasm).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a capability of a plugin, in running hosts (within a second)
    /// and across restarts; the next call is refused with `access-denied`.
    Revoke {
        /// Plugin id (in any pack) or `pack/plugin`.
        plugin: String,
        /// The capability to revoke (log, config, state, clock, http, files).
        /// Default: every capability.
        #[arg(long, value_parser = parse_capability)]
        capability: Option<vigil::capability::Capability>,
        /// Why; recorded in the audit log with who asked.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Undo `vigil revoke` for a plugin (one capability, or all of its revocations).
    Restore {
        /// Plugin id or `pack/plugin`, exactly as given to `vigil revoke`.
        plugin: String,
        /// Only this capability's revocation. Default: all of the plugin's.
        #[arg(long, value_parser = parse_capability)]
        capability: Option<vigil::capability::Capability>,
        /// Why; recorded in the audit log with who asked.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Run a pack's test cases; exits non-zero with a diff on any mismatch.
    Test {
        /// Pack directory. Default: the embedded starter pack.
        pack: Option<PathBuf>,
        #[command(flatten)]
        host: HostArgs,
    },
}

/// `vigil audit` subcommands.
#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the whole hash chain; names the first bad record. Exits 1 on damage.
    Verify,
    /// Print records, human-readable (or raw JSON Lines with --json).
    Show {
        /// Only invocations of this plugin id (and its quarantine records).
        #[arg(long)]
        plugin: Option<String>,
        /// Only records since this time: RFC 3339 or an age (`15m`, `2h`).
        #[arg(long, value_parser = parse_since)]
        since: Option<SystemTime>,
        /// Only invocations with a finding of this rule id.
        #[arg(long)]
        finding: Option<String>,
        /// Print the records as they are stored (JSON Lines).
        #[arg(long)]
        json: bool,
    },
    /// Per plugin: invocations, events, errors, findings, denials, host calls by
    /// capability; for enrichers, how many findings they enriched or could not.
    Stats,
}

fn parse_capability(text: &str) -> Result<vigil::capability::Capability, String> {
    use vigil::capability::Capability;
    Capability::ALL
        .into_iter()
        .find(|c| c.name() == text)
        .ok_or_else(|| {
            let names: Vec<_> = Capability::ALL.iter().map(|c| c.name()).collect();
            format!("`{text}` is not a capability; one of: {}", names.join(", "))
        })
}

fn parse_since(text: &str) -> Result<SystemTime, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(t);
    }
    humantime::parse_duration(text)
        .map(|age| SystemTime::now() - age)
        .map_err(|_| format!("`{text}` is neither an RFC 3339 time nor an age like `15m`"))
}

/// Options shared by commands that load packs.
#[derive(Debug, clap::Args)]
struct HostArgs {
    /// Operator policy (grants and limits). Default: ./vigil.toml if present,
    /// else the starter policy for the embedded starter pack, else deny all.
    // `global`: accepted after a subcommand too (`vigil audit verify --policy X`).
    #[arg(long, global = true)]
    policy: Option<PathBuf>,
    /// Directory for plugin state and the compile cache (overrides `state_dir`; default .vigil).
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        // Colour codes only for a terminal: a log file or a pipe gets plain
        // lines (and any ESC byte in it is then never the host's).
        .with_ansi(io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            // Errors quote pack manifests and components (third-party text):
            // escaped, keeping the message's own line breaks.
            eprintln!("vigil: error: {}", PluginLines(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run {
            packs,
            input,
            output,
            host,
            batch_size,
            audit,
        } => run_command(&packs, input, output, &host, batch_size, audit),
        Command::Audit {
            command,
            audit,
            host,
        } => audit_command(command, audit, &host),
        Command::Replay {
            record,
            plugin,
            since,
            audit,
            host,
        } => {
            let dir = audit_dir(audit, &host)?;
            let engine = vigil::engine::build_engine().map_err(anyhow::Error::from)?;
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
                    Verdict::NotReplayable(why) => {
                        (2, format!("not replayable: {}", PluginText(why)))
                    }
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
        Command::Check { pack, host } => {
            let source = pack_source(pack.as_deref())?;
            let runtime = runtime(&host, &source)?;
            // Checking runs each plugin's `init` once (the load-time
            // snapshot) and nothing else; it opens the plugins' state stores
            // in an empty scratch dir, so a running `vigil run` holding the
            // real ones (redb locks them) does not make the check fail.
            let scratch = tempfile::tempdir().context("creating a scratch state dir")?;
            match runtime.load_with_state_dir(source, scratch.path()) {
                Ok(generation) => {
                    let m = &generation.manifest;
                    println!(
                        "pack {} {}: ok",
                        PluginText(&m.name),
                        PluginText(&m.version)
                    );
                    for r in &generation.reports {
                        let names = |caps: &[vigil::capability::Capability]| {
                            if caps.is_empty() {
                                "none".to_owned()
                            } else {
                                caps.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
                            }
                        };
                        println!(
                            "  {:<20} {:?}  imports: {}  requested: {}  granted: {}  sha256: {}",
                            PluginText(&r.id).to_string(),
                            r.world,
                            names(&r.imported),
                            names(&r.requested),
                            names(&r.effective),
                            &r.digest[..16]
                        );
                        match r.init.as_ref().map(|i| &i.mode) {
                            Some(InitMode::Snapshot { .. }) => {
                                println!("    init: snapshot (run once at load)")
                            }
                            Some(InitMode::PerInstance { why }) => {
                                println!("    init: per instance ({})", PluginText(why))
                            }
                            None => {}
                        }
                        for w in &r.warnings {
                            println!("    warning: {w}");
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    eprintln!(
                        "pack refused ({} problem{}):",
                        errors.0.len(),
                        if errors.0.len() == 1 { "" } else { "s" }
                    );
                    for e in &errors.0 {
                        eprintln!("  - {}", PluginText(&e.to_string()));
                    }
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Inspect { file, json } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let engine = vigil::engine::build_engine().map_err(anyhow::Error::from)?;
            let inspection = vigil::inspect::inspect(&engine, &bytes).map_err(|e| {
                anyhow::anyhow!("{}: not a valid Wasm component: {e:#}", file.display())
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&inspection)?);
            } else {
                print!("{inspection}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Revoke {
            plugin,
            capability,
            reason,
            host,
        } => change_grant(&host, Action::Revoke, plugin, capability, reason),
        Command::Restore {
            plugin,
            capability,
            reason,
            host,
        } => change_grant(&host, Action::Restore, plugin, capability, reason),
        Command::Test { pack, host } => {
            let source = pack_source(pack.as_deref())?;
            let runtime = runtime(&host, &source)?;
            let results = vigil::pack_test::run_cases(&runtime, &source)
                .map_err(|e| anyhow::anyhow!("pack refused:\n{e}"))?;
            let failed = results.iter().filter(|r| !r.passed()).count();
            for r in &results {
                println!("{r}");
            }
            println!("{} passed, {} failed", results.len() - failed, failed);
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// `vigil revoke` / `vigil restore`: edit the revocation list in the state
/// dir (running hosts watching it apply the change) and record the change
/// in the audit log, or leave it to the running host to record.
fn change_grant(
    host: &HostArgs,
    action: Action,
    plugin: String,
    capability: Option<vigil::capability::Capability>,
    reason: String,
) -> Result<ExitCode> {
    let (policy, state_dir) = policy_and_state_dir(host)?;
    let audit_dir = policy.audit_dir(&state_dir);
    let request = ChangeRequest {
        action,
        plugin,
        capability,
        reason,
        by: revocation::current_user(),
        at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    };
    let applied = revocation::apply(&state_dir, &policy.audit, &audit_dir, request)?;
    let change = &applied.change;
    let done = match action {
        Action::Revoke => format!("revoked {} of {}", what(change.capability), change.plugin),
        Action::Restore => format!("restored {} ({})", change.plugin, change.ends.join("; ")),
    };
    eprintln!(
        "vigil: {done} ({}; a running `vigil run` with state dir {} applies it within a second)",
        state_dir.join(revocation::FILE).display(),
        state_dir.display()
    );
    match &applied.recorded {
        Recorded::Now(dir) => eprintln!(
            "vigil: recorded as grant change {} in the audit log {}",
            change.id,
            dir.display()
        ),
        Recorded::ByRunningHost => eprintln!(
            "vigil: a running `vigil run` records grant change {} in its audit log",
            change.id
        ),
        Recorded::Later(why) => eprintln!(
            "vigil: warning: grant change {} is in force but not recorded yet ({why}); \
             the next `vigil run`, `vigil revoke` or `vigil restore` with this state dir records it",
            change.id
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `http` or `every capability`.
fn what(capability: Option<vigil::capability::Capability>) -> String {
    capability.map_or_else(|| "every capability".to_owned(), |c| c.to_string())
}

/// `vigil run`: load, audit, resume if interrupted, dispatch.
fn run_command(
    packs: &[PathBuf],
    input: Option<PathBuf>,
    output: Option<PathBuf>,
    args: &HostArgs,
    batch_size: Option<usize>,
    audit: Option<PathBuf>,
) -> Result<ExitCode> {
    let sources: Vec<PackSource> = if packs.is_empty() {
        vec![artifacts::starter_pack().map_err(anyhow::Error::msg)?]
    } else {
        packs.iter().map(|p| PackSource::Dir(p.clone())).collect()
    };
    let (policy, state_dir) = policy_for(args, &sources[0])?;
    let batch_size = batch_size.unwrap_or_else(|| policy.batch_size());
    if batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let options = HostOptions {
        policy,
        state_dir,
        audit_dir: audit,
        command: "run".to_owned(),
    };
    let mut host = Host::open(options, &sources)?;
    let mut sink = JsonLines::new(match &output {
        Some(path) => Box::new(BufWriter::new(
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )) as Box<dyn Write + Send>,
        None => Box::new(BufWriter::new(io::stdout())),
    });
    // The input's name in the log: resuming matches on it.
    let (mut source, resumed_from): (Box<dyn EventSource>, _) = match input.as_deref() {
        None => {
            // Says what to do when this binary has no starter pack.
            artifacts::starter_pack().map_err(anyhow::Error::msg)?;
            (
                Box::new(Lines::new(
                    "<embedded starter pack>/events.jsonl",
                    artifacts::starter_events(),
                )),
                None,
            )
        }
        // Standard input cannot be rewound, so it is never resumed.
        Some(p) if p == Path::new("-") => (Box::new(Lines::stdin()?), None),
        Some(p) => {
            let name = std::fs::canonicalize(p)
                .unwrap_or_else(|_| p.to_owned())
                .display()
                .to_string();
            // Only a regular file can be skipped to where an interrupted
            // run stopped; a FIFO is read as it comes.
            let from = if std::fs::metadata(p).is_ok_and(|m| m.is_file()) {
                host.resume_position(&name)?
            } else {
                None
            };
            let source = source::open_file(p, &name, from)
                .with_context(|| format!("opening events file {}", p.display()))?;
            if let Some(pos) = from {
                eprintln!(
                    "vigil: resuming an interrupted run over {name} after line {} (byte {})",
                    pos.line, pos.offset
                );
            }
            (source, from)
        }
    };
    let stats = host.run(&mut *source, &mut sink, resumed_from, batch_size)?;
    sink.into_inner().flush()?;
    let dir = host.audit_dir().display().to_string();
    host.close("run finished")?;
    eprintln!("{} (audit: {dir})", stats.summary());
    Ok(ExitCode::SUCCESS)
}

/// The audit directory for commands that only read it.
fn audit_dir(audit: Option<PathBuf>, host: &HostArgs) -> Result<PathBuf> {
    if let Some(dir) = audit {
        return Ok(dir);
    }
    let (policy, state_dir) = policy_and_state_dir(host)?;
    Ok(policy.audit_dir(&state_dir))
}

/// For commands that load no pack: the policy (`--policy`, else
/// `./vigil.toml`, else the default) and the state dir it implies.
fn policy_and_state_dir(host: &HostArgs) -> Result<(Policy, PathBuf)> {
    let policy = match &host.policy {
        Some(path) => read_policy(path)?,
        None if Path::new("vigil.toml").exists() => read_policy(Path::new("vigil.toml"))?,
        None => Policy::default(),
    };
    let state_dir = host.state_dir.clone().unwrap_or_else(|| policy.state_dir());
    Ok((policy, state_dir))
}

/// `vigil audit verify|show|stats`.
fn audit_command(
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

fn pack_source(dir: Option<&Path>) -> Result<PackSource> {
    match dir {
        Some(dir) => Ok(PackSource::Dir(dir.to_owned())),
        None => artifacts::starter_pack().map_err(anyhow::Error::msg),
    }
}

/// Resolve the policy and state dir, then build the runtime.
fn runtime(args: &HostArgs, source: &PackSource) -> Result<Runtime> {
    let (policy, state_dir) = policy_for(args, source)?;
    Runtime::new(policy, state_dir).map_err(anyhow::Error::from)
}

/// The policy (`--policy`, else `./vigil.toml`, else the starter policy
/// for the embedded starter pack, else deny-all) and the state dir.
fn policy_for(args: &HostArgs, source: &PackSource) -> Result<(Policy, PathBuf)> {
    let local = Path::new("vigil.toml");
    let policy = match &args.policy {
        Some(path) => read_policy(path)?,
        None if local.exists() => read_policy(local)?,
        None if matches!(source, PackSource::Embedded { .. }) => artifacts::starter_policy(),
        None => {
            tracing::warn!("no --policy and no ./vigil.toml: every capability is denied");
            Policy::default()
        }
    };
    let state_dir = args.state_dir.clone().unwrap_or_else(|| policy.state_dir());
    Ok((policy, state_dir))
}

fn read_policy(path: &Path) -> Result<Policy> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading policy {}", path.display()))?;
    Ok(Policy::parse(&path.display().to_string(), &text)?)
}
