//! `vigil run`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use vigil::artifacts;
use vigil::host::{Host, HostOptions};
use vigil::load::pack::PackSource;
use vigil::pipeline::sink::JsonLines;
use vigil::pipeline::source::{self, EventSource, Lines};

use super::HostArgs;
use super::settings::policy_for;

/// `vigil run`: load, audit, resume if interrupted, dispatch.
pub(crate) fn run_command(
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
