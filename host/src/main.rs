//! The `vigil` command line.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use vigil::artifacts;
use vigil::pack::PackSource;
use vigil::policy::Policy;
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
        /// Pack directory (holding pack.toml). Default: the embedded starter pack.
        #[arg(long)]
        pack: Option<PathBuf>,
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
    /// Run a pack's test cases; exits non-zero with a diff on any mismatch.
    Test {
        /// Pack directory. Default: the embedded starter pack.
        pack: Option<PathBuf>,
        #[command(flatten)]
        host: HostArgs,
    },
}

/// Options shared by commands that load packs.
#[derive(Debug, clap::Args)]
struct HostArgs {
    /// Operator policy (grants and limits). Default: ./vigil.toml if present,
    /// else the starter policy for the embedded starter pack, else deny all.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Directory for plugin state and the compile cache (overrides `state_dir`; default .vigil).
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .without_time()
        .with_target(false)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vigil: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run {
            pack,
            input,
            output,
            host,
            batch_size,
        } => {
            let source = pack_source(pack.as_deref());
            let runtime = runtime(&host, &source)?;
            let generation = runtime
                .load(source)
                .map_err(|e| anyhow::anyhow!("pack refused:\n{e}"))?;
            let batch_size = batch_size.unwrap_or_else(|| runtime.policy.batch_size());
            if batch_size == 0 {
                bail!("--batch-size must be at least 1");
            }
            let mut out: Box<dyn Write> = match &output {
                Some(path) => Box::new(BufWriter::new(
                    File::create(path).with_context(|| format!("creating {}", path.display()))?,
                )),
                None => Box::new(BufWriter::new(io::stdout().lock())),
            };
            let stats = match input.as_deref() {
                None => vigil::dispatch::run(
                    &generation,
                    artifacts::starter_events(),
                    "events.jsonl",
                    batch_size,
                    &mut out,
                )?,
                Some(p) if p == Path::new("-") => vigil::dispatch::run(
                    &generation,
                    io::stdin().lock(),
                    "-",
                    batch_size,
                    &mut out,
                )?,
                Some(p) => {
                    let file = File::open(p)
                        .with_context(|| format!("opening events file {}", p.display()))?;
                    vigil::dispatch::run(
                        &generation,
                        BufReader::new(file),
                        &p.display().to_string(),
                        batch_size,
                        &mut out,
                    )?
                }
            };
            out.flush()?;
            eprintln!("{}", stats.summary());
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { pack, host } => {
            let source = pack_source(pack.as_deref());
            let runtime = runtime(&host, &source)?;
            match runtime.load(source) {
                Ok(generation) => {
                    let m = &generation.manifest;
                    println!("pack {} {}: ok", m.name, m.version);
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
                            r.id,
                            r.world,
                            names(&r.imported),
                            names(&r.requested),
                            names(&r.effective),
                            &r.digest[..16]
                        );
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
                        eprintln!("  - {e}");
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
        Command::Test { pack, host } => {
            let source = pack_source(pack.as_deref());
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

fn pack_source(dir: Option<&Path>) -> PackSource {
    match dir {
        Some(dir) => PackSource::Dir(dir.to_owned()),
        None => artifacts::starter_pack(),
    }
}

/// Resolve the policy and state dir, then build the runtime.
fn runtime(args: &HostArgs, source: &PackSource) -> Result<Runtime> {
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
    Runtime::new(policy, state_dir).map_err(anyhow::Error::from)
}

fn read_policy(path: &Path) -> Result<Policy> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading policy {}", path.display()))?;
    Ok(Policy::parse(&path.display().to_string(), &text)?)
}
