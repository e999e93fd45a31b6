//! `vigil serve` and `vigil status`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use vigil::control::status::HostStatus;
use vigil::load::policy::Policy;
use vigil::serve::admin::admin_token;
use vigil::serve::{ServeOptions, serve};

/// The config `vigil serve` and `vigil status` read.
fn read_config(config: &Path) -> Result<Policy> {
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("reading config {}", config.display()))?;
    Ok(Policy::parse(&config.display().to_string(), &text)?)
}

/// `vigil serve`: run until SIGTERM/SIGINT.
pub(crate) fn serve_command(
    config: &Path,
    state_dir: Option<PathBuf>,
    audit: Option<PathBuf>,
) -> Result<ExitCode> {
    let policy = read_config(config)?;
    let state_dir = state_dir.unwrap_or_else(|| policy.state_dir());
    let served = serve(ServeOptions {
        config_file: config.display().to_string(),
        policy,
        state_dir,
        audit_dir: audit,
    })?;
    eprintln!(
        "{} (stopped: {}; audit: {})",
        served.stats.summary(),
        served.reason,
        served.audit_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `vigil status`: ask a running `vigil serve` (its `[serve.admin]`).
pub(crate) fn status_command(config: &Path, json: bool) -> Result<ExitCode> {
    let policy = read_config(config)?;
    let Some(admin) = policy.serve.as_ref().and_then(|s| s.admin.as_ref()) else {
        bail!(
            "{} has no [serve.admin] table: `vigil status` asks the admin API of a running `vigil serve`",
            config.display()
        );
    };
    let token = admin_token(admin)?;
    let url = format!("http://{}/status", admin.listen);
    let mut request = ureq::get(&url);
    if let Some(token) = &token {
        request = request.set("authorization", &format!("Bearer {token}"));
    }
    let body = match request.call() {
        Ok(response) => response.into_string()?,
        Err(ureq::Error::Status(code, response)) => {
            bail!(
                "{url}: {code}: {}",
                response.into_string().unwrap_or_default()
            )
        }
        Err(e) => bail!("{url}: {e} (is `vigil serve` running with this config?)"),
    };
    if json {
        println!("{body}");
    } else {
        let status: HostStatus =
            serde_json::from_str(&body).with_context(|| format!("reading {url}"))?;
        print!("{}", status.describe());
    }
    Ok(ExitCode::SUCCESS)
}
