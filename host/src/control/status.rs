//! What a running host reports about itself (`GET /status`, `vigil
//! status`): every pack's current generation, each plugin's effective
//! grants, init mode, quarantine and revocations, and the last reload of
//! every pack directory.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::audit::record::Revocation;
use crate::capability::Capability;
use crate::control::reload::DirStatus;
use crate::load::pack::PackSet;
use crate::revocation::{self, Revocations};

/// A host's state at one moment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostStatus {
    /// `vigil` version.
    pub version: String,
    /// When the host started.
    pub started_at: Timestamp,
    /// The packs that run, by name.
    pub packs: Vec<PackStatus>,
    /// Revocations in force.
    pub revocations: Vec<Revocation>,
    /// The last reload of each pack directory (refused ones say why).
    pub reloads: Vec<ReloadStatus>,
}

/// One pack's current generation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackStatus {
    /// Pack name.
    pub name: String,
    /// Pack version.
    pub version: String,
    /// Generation number within the host process.
    pub generation: u64,
    /// Where it was loaded from.
    pub source: String,
    /// Its detectors and enrichers.
    pub plugins: Vec<PluginStatus>,
}

/// One plugin of a current generation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginStatus {
    /// Plugin id.
    pub id: String,
    /// `detector`, `enricher` or `responder`.
    pub world: String,
    /// What it may use: requested ∩ granted (revocations are listed apart).
    pub effective: Vec<Capability>,
    /// SHA-256 of its component.
    pub component: String,
    /// `snapshot` or `per-instance`.
    pub init: Option<String>,
    /// `quarantined until T: why`, if it is.
    pub quarantine: Option<String>,
    /// Revocations in force that cover it.
    pub revoked: Vec<String>,
}

/// The last reload of one pack directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReloadStatus {
    /// The pack directory.
    pub dir: String,
    /// The pack that runs from it, if any.
    pub pack: Option<String>,
    /// When the reload ended.
    pub at: Timestamp,
    /// What set it off.
    pub trigger: String,
    /// `swapped`, `removed`, `nothing` or `refused`.
    pub outcome: String,
    /// Why it was refused.
    pub reasons: Vec<String>,
    /// How long it took, milliseconds.
    pub took_ms: u64,
}

impl From<DirStatus> for ReloadStatus {
    fn from(d: DirStatus) -> Self {
        ReloadStatus {
            dir: d.dir.display().to_string(),
            pack: d.pack,
            at: d.at,
            trigger: d.trigger,
            outcome: d.outcome.to_owned(),
            reasons: d.reasons,
            took_ms: d.took_ms,
        }
    }
}

/// The status of a host running `packs` under `revocations`.
pub fn snapshot(
    started_at: Timestamp,
    packs: &PackSet,
    revocations: &Revocations,
    reloads: Vec<DirStatus>,
) -> HostStatus {
    let in_force = revocations.in_force();
    let packs = (packs.current().iter())
        .map(|g| {
            let pack = g.manifest.name.as_str();
            let plugins = (g.reports.iter())
                .map(|r| {
                    let loaded = (g.detectors.iter())
                        .chain(&g.enrichers)
                        .find(|p| *p.id == *r.id);
                    PluginStatus {
                        id: r.id.clone(),
                        world: r.world.name().to_owned(),
                        effective: r.effective.clone(),
                        component: r.digest.clone(),
                        init: r.init.as_ref().map(|i| i.mode.name().to_owned()),
                        quarantine: loaded.and_then(|p| p.quarantine()).map(|q| q.describe()),
                        revoked: (in_force.iter())
                            .filter(|v| revocation::names(&v.plugin, pack, &r.id))
                            .map(|v| {
                                format!(
                                    "{} by {} at {}: {}",
                                    v.capability
                                        .map_or("every capability".to_owned(), |c| c.to_string()),
                                    v.by,
                                    v.at,
                                    v.reason
                                )
                            })
                            .collect(),
                    }
                })
                .collect();
            PackStatus {
                name: pack.to_owned(),
                version: g.manifest.version.clone(),
                generation: g.number,
                source: g.source.display(""),
                plugins,
            }
        })
        .collect();
    HostStatus {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at,
        packs,
        revocations: in_force,
        reloads: reloads.into_iter().map(ReloadStatus::from).collect(),
    }
}

impl HostStatus {
    /// For a person: one block per pack, one line per plugin, then the
    /// reloads that did not swap.
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let mut out = format!("vigil {} up since {}\n", self.version, self.started_at);
        for p in &self.packs {
            let _ = writeln!(
                out,
                "pack {} {} generation {} ({})",
                p.name, p.version, p.generation, p.source
            );
            for plugin in &p.plugins {
                let caps: Vec<&str> = plugin.effective.iter().map(|c| c.name()).collect();
                let _ = write!(
                    out,
                    "  {} {} [{}] component {} init {}",
                    plugin.id,
                    plugin.world,
                    caps.join(", "),
                    plugin.component.get(..12).unwrap_or(&plugin.component),
                    plugin.init.as_deref().unwrap_or("-")
                );
                if let Some(q) = &plugin.quarantine {
                    let _ = write!(out, "; {q}");
                }
                for r in &plugin.revoked {
                    let _ = write!(out, "; revoked: {r}");
                }
                out.push('\n');
            }
        }
        for r in &self.reloads {
            let _ = write!(
                out,
                "reload {} {} at {} ({}, {} ms)",
                r.dir, r.outcome, r.at, r.trigger, r.took_ms
            );
            for reason in &r.reasons {
                let _ = write!(out, "\n  {reason}");
            }
            out.push('\n');
        }
        out
    }
}
