//! The `vigil` command line: argument parsing here, one short function
//! over the library per command in the modules below.

mod audit;
mod grants;
mod pack;
mod run;
mod serve;
mod settings;

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Result;
use clap::{Parser, Subcommand};
use vigil::plugin_text::PluginLines;
use vigil::revocation::Action;

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
    /// Validate a pack without running events: manifest, components, imports vs grants; runs each
    /// plugin's `init` once, as a load does, and says whether it runs from a snapshot.
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
        /// Plugin id (in any pack), `pack/plugin`, or `pack/*` for every plugin of a pack.
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
        /// Plugin id, `pack/plugin` or `pack/*`, exactly as given to `vigil revoke`.
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
    /// Run as a service until SIGTERM/SIGINT: packs from `[serve] packs_dir`,
    /// hot-reloaded when their files change (or on SIGHUP, or `POST /reload`),
    /// HTTP ingest, admin API and Prometheus metrics (README "Run as a service").
    Serve {
        /// The config: the operator policy with a `[serve]` table.
        #[arg(long, default_value = "vigil.toml")]
        config: PathBuf,
        /// Directory for plugin state and the compile cache (overrides `state_dir`).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Audit log directory (default: `[audit] path`, else STATE_DIR/audit).
        #[arg(long)]
        audit: Option<PathBuf>,
    },
    /// Print the status of a running `vigil serve` (packs, generations,
    /// grants, quarantines, revocations, last reloads) from its admin API.
    Status {
        /// The config of the running service (its `[serve.admin]`).
        #[arg(long, default_value = "vigil.toml")]
        config: PathBuf,
        /// Print the JSON `GET /status` returns.
        #[arg(long)]
        json: bool,
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
        .iter()
        .copied()
        .find(|c| c.name() == text)
        .ok_or_else(|| {
            format!(
                "`{text}` is not a capability; one of: {}",
                Capability::names()
            )
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
        } => run::run_command(&packs, input, output, &host, batch_size, audit),
        Command::Audit {
            command,
            audit,
            host,
        } => audit::audit_command(command, audit, &host),
        Command::Replay {
            record,
            plugin,
            since,
            audit,
            host,
        } => audit::replay_command(record, plugin, since, audit, &host),
        Command::Check { pack, host } => pack::check_command(pack.as_deref(), &host),
        Command::Inspect { file, json } => pack::inspect_command(&file, json),
        Command::Revoke {
            plugin,
            capability,
            reason,
            host,
        } => grants::change_grant(&host, Action::Revoke, plugin, capability, reason),
        Command::Restore {
            plugin,
            capability,
            reason,
            host,
        } => grants::change_grant(&host, Action::Restore, plugin, capability, reason),
        Command::Test { pack, host } => pack::test_command(pack.as_deref(), &host),
        Command::Serve {
            config,
            state_dir,
            audit,
        } => serve::serve_command(&config, state_dir, audit),
        Command::Status { config, json } => serve::status_command(&config, json),
    }
}
