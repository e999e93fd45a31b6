//! `vigil revoke` and `vigil restore`.

use std::process::ExitCode;

use anyhow::Result;
use vigil::revocation::{self, Action, ChangeRequest, Recorded};

use super::HostArgs;
use super::settings::policy_and_state_dir;

/// `vigil revoke` / `vigil restore`: edit the revocation list in the state
/// dir (running hosts watching it apply the change) and record the change
/// in the audit log, or leave it to the running host to record.
pub(crate) fn change_grant(
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
        at: jiff::Timestamp::now(),
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
pub(crate) fn what(capability: Option<vigil::capability::Capability>) -> String {
    capability.map_or_else(|| "every capability".to_owned(), |c| c.to_string())
}
