//! `vigil check`, `vigil inspect`, `vigil test`: commands over one pack or component.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use vigil::load::preinit::InitMode;
use vigil::plugin_text::PluginText;

use super::HostArgs;
use super::settings::{pack_source, runtime};

/// `vigil check`: load a pack as a run would and report each plugin.
pub(crate) fn check_command(pack: Option<&Path>, host: &HostArgs) -> Result<ExitCode> {
    let source = pack_source(pack)?;
    let runtime = runtime(host, &source)?;
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

/// `vigil inspect`: what a component declares, without running it.
pub(crate) fn inspect_command(file: &Path, json: bool) -> Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let engine = vigil::load::engine::build_engine().map_err(anyhow::Error::from)?;
    let inspection = vigil::load::inspect::inspect(&engine, &bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a valid Wasm component: {e:#}", file.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&inspection)?);
    } else {
        print!("{inspection}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `vigil test`: run a pack's own test cases.
pub(crate) fn test_command(pack: Option<&Path>, host: &HostArgs) -> Result<ExitCode> {
    let source = pack_source(pack)?;
    let runtime = runtime(host, &source)?;
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
