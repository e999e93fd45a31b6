//! From command-line options to what the library needs: the policy, the
//! state and audit directories, the pack source, a runtime.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use vigil::artifacts;
use vigil::load::pack::PackSource;
use vigil::load::policy::Policy;
use vigil::load::runtime::Runtime;

use super::HostArgs;

pub(crate) fn pack_source(dir: Option<&Path>) -> Result<PackSource> {
    match dir {
        Some(dir) => Ok(PackSource::Dir(dir.to_owned())),
        None => artifacts::starter_pack().map_err(anyhow::Error::msg),
    }
}

/// Resolve the policy and state dir, then build the runtime.
pub(crate) fn runtime(args: &HostArgs, source: &PackSource) -> Result<Runtime> {
    let (policy, state_dir) = policy_for(args, source)?;
    Runtime::new(policy, state_dir).map_err(anyhow::Error::from)
}

/// The policy (`--policy`, else `./vigil.toml`, else the starter policy
/// for the embedded starter pack, else deny-all) and the state dir.
pub(crate) fn policy_for(args: &HostArgs, source: &PackSource) -> Result<(Policy, PathBuf)> {
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

/// The audit directory for commands that only read it.
pub(crate) fn audit_dir(audit: Option<PathBuf>, host: &HostArgs) -> Result<PathBuf> {
    if let Some(dir) = audit {
        return Ok(dir);
    }
    let (policy, state_dir) = policy_and_state_dir(host)?;
    Ok(policy.audit_dir(&state_dir))
}

/// For commands that load no pack: the policy (`--policy`, else
/// `./vigil.toml`, else the default) and the state dir it implies.
pub(crate) fn policy_and_state_dir(host: &HostArgs) -> Result<(Policy, PathBuf)> {
    let policy = match &host.policy {
        Some(path) => read_policy(path)?,
        None if Path::new("vigil.toml").exists() => read_policy(Path::new("vigil.toml"))?,
        None => Policy::default(),
    };
    let state_dir = host.state_dir.clone().unwrap_or_else(|| policy.state_dir());
    Ok((policy, state_dir))
}
