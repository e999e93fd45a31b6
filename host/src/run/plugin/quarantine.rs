//! Quarantine: a plugin whose code misbehaves call after call gets no
//! calls for a growing back-off, then one probe (see the module doc of
//! [`crate::run::plugin`] for the rules). Decided here and only here: the call
//! path asks [`LoadedPlugin::admit`] before a call and reports each
//! result to [`LoadedPlugin::record_health`] after it.

use std::time::{Duration, Instant, SystemTime};

use super::{CallError, LoadedPlugin};

/// The longest quarantine back-off (unless `quarantine_ms` alone is longer).
pub const MAX_QUARANTINE: Duration = Duration::from_secs(600);

/// A change of a plugin's quarantine, carried by the call it happened on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuarantineChange {
    /// The plugin is quarantined until `until` (after this call).
    Quarantined {
        /// Why; includes the call's error (plugin-controlled text).
        reason: String,
        /// When the back-off ends.
        until: SystemTime,
        /// The back-off.
        backoff: Duration,
    },
    /// The back-off ended and this call is the probe (before the call).
    Probe {
        /// The reason of the quarantine being probed.
        reason: String,
    },
    /// The quarantine ended: after a probe that behaved, or before a call
    /// because a capability of the plugin was restored.
    Lifted {
        /// `probe succeeded`, `probe behaved (...)` (it returned an error
        /// value), or `restored by <who>`.
        reason: String,
    },
}

/// A plugin's quarantine in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    /// Why (plugin-controlled text inside).
    pub reason: String,
    /// When the back-off ends, on the wall clock (for messages and records).
    pub until: SystemTime,
    /// The back-off this quarantine was given.
    pub backoff: Duration,
    /// When the back-off ends, on the monotonic clock (what is checked).
    ends: Instant,
}

impl Quarantine {
    /// `quarantined until T: why`, as a skipped call reports it.
    pub fn describe(&self) -> String {
        format!(
            "quarantined until {}: {}",
            humantime::format_rfc3339_seconds(self.until),
            self.reason
        )
    }
}

/// Whether a plugin may be called now; see [`LoadedPlugin::admit`].
#[derive(Debug)]
pub enum Admission {
    /// Call it, passing the ticket to the call.
    Call(Ticket),
    /// Skip it: quarantined (the text says until when and why).
    Skip(String),
}

/// Permission for one call, with the quarantine changes decided when it
/// was given (a lift by a restore, the start of a probe).
#[derive(Debug, Default)]
pub struct Ticket {
    pub(super) probe: bool,
    pub(super) before: Vec<QuarantineChange>,
}

/// A plugin's record of behaviour, for quarantine.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// Misbehaving calls in a row.
    misbehaved: u32,
    quarantine: Option<Quarantine>,
    /// Quarantines since the plugin last behaved on a probe (or was
    /// restored): the back-off doubles with each.
    repeats: u32,
    /// A probe call is under way (enrichers run on several workers; the
    /// others skip until it ends).
    probing: bool,
    /// Restores already looked at (see
    /// [`crate::capability::tape::RevocationCheck::restored_since`]).
    restores_seen: usize,
}

impl LoadedPlugin {
    /// The plugin's quarantine, if it is quarantined.
    pub fn quarantine(&self) -> Option<Quarantine> {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .quarantine
            .clone()
    }

    /// Whether the plugin may be called now. A quarantined plugin is
    /// skipped until its back-off ends; then one call (this one) is the
    /// probe, and other callers skip until it ends. A restore of any of
    /// its capabilities since the last call lifts the quarantine first.
    pub fn admit(&self) -> Admission {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let mut before = Vec::new();
        let scope = self.template.revocations.as_ref();
        if let Some(by) = scope.and_then(|s| s.restored_since(&mut health.restores_seen))
            && health.quarantine.is_some()
        {
            *health = Health {
                restores_seen: health.restores_seen,
                ..Health::default()
            };
            before.push(QuarantineChange::Lifted {
                reason: format!("restored by {by}"),
            });
        }
        let Some(quarantine) = &health.quarantine else {
            return Admission::Call(Ticket {
                probe: false,
                before,
            });
        };
        if health.probing {
            return Admission::Skip(format!(
                "{} (a probe call is under way)",
                quarantine.describe()
            ));
        }
        if Instant::now() < quarantine.ends {
            return Admission::Skip(quarantine.describe());
        }
        before.push(QuarantineChange::Probe {
            reason: quarantine.reason.clone(),
        });
        health.probing = true;
        Admission::Call(Ticket {
            probe: true,
            before,
        })
    }

    /// Update the misbehaviour streak and the quarantine after a call
    /// (`probe`: the call was the probe at the end of a quarantine);
    /// returns the change it caused.
    pub(super) fn record_health<T>(
        &self,
        result: &Result<T, CallError>,
        probe: bool,
    ) -> Option<QuarantineChange> {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let misbehaviour = result.as_ref().err().filter(|e| e.is_misbehaviour());
        if probe {
            health.probing = false;
        }
        match (health.quarantine.is_some(), misbehaviour) {
            // A probe that behaved (succeeded, or returned an error value,
            // which is not misbehaviour) ends the quarantine.
            (true, None) if probe => {
                let reason = match result {
                    Ok(_) => "probe succeeded".to_owned(),
                    Err(e) => format!("probe behaved (it {e}, an error value, not misbehaviour)"),
                };
                health.quarantine = None;
                health.repeats = 0;
                health.misbehaved = 0;
                Some(QuarantineChange::Lifted { reason })
            }
            (true, Some(e)) if probe => {
                health.repeats += 1;
                Some(self.quarantine_now(&mut health, format!("the probe call {e}")))
            }
            // A call admitted before the quarantine began, finishing now.
            (true, _) => None,
            (false, None) => {
                if result.is_ok() {
                    health.misbehaved = 0;
                }
                None
            }
            (false, Some(e)) => {
                health.misbehaved += 1;
                (health.misbehaved >= self.limits.quarantine_after).then(|| {
                    let reason = format!(
                        "{} misbehaving calls in a row, the last one {e}",
                        health.misbehaved
                    );
                    self.quarantine_now(&mut health, reason)
                })
            }
        }
    }

    /// Quarantine the plugin for the back-off its repeat count earns.
    fn quarantine_now(&self, health: &mut Health, reason: String) -> QuarantineChange {
        let base = self.limits.quarantine;
        let backoff = base
            .saturating_mul(1u32 << health.repeats.min(20))
            .min(MAX_QUARANTINE.max(base));
        let until = SystemTime::now() + backoff;
        health.misbehaved = 0;
        health.quarantine = Some(Quarantine {
            reason: reason.clone(),
            until,
            backoff,
            ends: Instant::now() + backoff,
        });
        QuarantineChange::Quarantined {
            reason,
            until,
            backoff,
        }
    }
}
