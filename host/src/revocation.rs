//! Revoking a capability of a running plugin, and restoring it.
//!
//! `vigil revoke` and `vigil restore` edit one file, `revocations.json` in
//! the state directory (written atomically: temp file, fsync, rename). It
//! is the persisted truth: a host loads it at start, and a running
//! `vigil run` watches it (inotify through `notify`) and swaps the new list
//! into the shared [`Revocations`] within milliseconds. Every host call
//! goes through the audit tape, which asks [`RevocationScope::check`]
//! before running it, so the next call after a revocation is refused with
//! the interface's `access-denied` and recorded as denied with the reason.
//!
//! The capability stays linked: a revoked plugin keeps loading and running
//! (its detections keep flowing); only the revoked calls are refused.
//! Each change the host observes becomes a `grant-change` lifecycle record
//! (who, why, when requested) written before the next batch unit.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::audit::record::Lifecycle;
use crate::capability::Capability;

/// File name of the revocation list in the state directory.
pub const FILE: &str = "revocations.json";

/// One revocation in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// `plugin-id` (any pack) or `pack/plugin-id`.
    pub plugin: String,
    /// The revoked capability; `None` revokes every capability.
    pub capability: Option<Capability>,
    /// Why, as given to `vigil revoke --reason`.
    pub reason: String,
    /// Who asked (the OS user running `vigil revoke`).
    pub by: String,
    /// When it was asked, RFC 3339.
    pub at: String,
}

impl Revocation {
    /// Whether this revocation covers `capability` of `pack/plugin`.
    pub fn covers(&self, pack: &str, plugin: &str, capability: Capability) -> bool {
        self.capability.is_none_or(|c| c == capability) && self.names(pack, plugin)
    }

    fn names(&self, pack: &str, plugin: &str) -> bool {
        match self.plugin.split_once('/') {
            Some((p, id)) => p == pack && id == plugin,
            None => self.plugin == plugin,
        }
    }

    /// `http` or `every capability`, for messages.
    pub fn what(&self) -> String {
        self.capability
            .map_or_else(|| "every capability".to_owned(), |c| c.to_string())
    }
}

/// Why the revocation file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a revocation list.
    #[error(
        "{}: not a revocation list: {source} (fix or delete the file; `vigil revoke` rewrites it)",
        path.display()
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The parse error, with line and column.
        source: serde_json::Error,
    },
}

/// The persisted list of revocations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationList {
    /// Revocations in force, oldest first.
    pub revoked: Vec<Revocation>,
}

impl RevocationList {
    /// The list in `path`; a missing file is an empty list.
    pub fn load(path: &Path) -> Result<RevocationList, RevocationError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| RevocationError::Malformed {
                    path: path.to_owned(),
                    source,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RevocationList::default()),
            Err(source) => Err(RevocationError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Write the list to `path` atomically, so a watcher never reads half.
    pub fn save(&self, path: &Path) -> Result<(), RevocationError> {
        let io = |source| RevocationError::Io {
            path: path.to_owned(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        let json = serde_json::to_vec_pretty(self).expect("a revocation list serializes");
        std::io::Write::write_all(&mut tmp, &json).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }

    /// Add `revocation`, replacing one for the same plugin and capability.
    pub fn revoke(&mut self, revocation: Revocation) {
        self.revoked
            .retain(|r| !(r.plugin == revocation.plugin && r.capability == revocation.capability));
        self.revoked.push(revocation);
    }

    /// Remove the revocations of `plugin` for `capability` (`None`: all of
    /// the plugin's); returns what was removed.
    pub fn restore(&mut self, plugin: &str, capability: Option<Capability>) -> Vec<Revocation> {
        let (removed, kept) = std::mem::take(&mut self.revoked)
            .into_iter()
            .partition(|r| {
                r.plugin == plugin && (capability.is_none() || r.capability == capability)
            });
        self.revoked = kept;
        removed
    }
}

/// The revocations in force in a running host, shared by every plugin call.
#[derive(Debug, Default)]
pub struct Revocations {
    list: RwLock<RevocationList>,
    /// Fast path: most hosts have nothing revoked.
    any: AtomicBool,
    /// Changes observed since the audit stage last took them.
    changes: Mutex<Vec<Lifecycle>>,
}

impl Revocations {
    /// Start with `list` (read at host start).
    pub fn new(list: RevocationList) -> Arc<Revocations> {
        let revocations = Arc::new(Revocations::default());
        revocations.replace(list, Some("in force at host start"));
        revocations
    }

    /// Put `list` in force. Each revocation added or removed relative to
    /// the list in force becomes a `grant-change` record for the audit log,
    /// with `note` (e.g. `in force at host start`).
    pub fn replace(&self, list: RevocationList, note: Option<&str>) {
        let mut current = self.list.write().unwrap_or_else(|p| p.into_inner());
        let added = (list.revoked.iter())
            .filter(|r| !current.revoked.contains(r))
            .map(|r| ("revoke", r));
        let removed = (current.revoked.iter())
            .filter(|r| !list.revoked.contains(r))
            .map(|r| ("restore", r));
        let mut changes = Vec::new();
        for (action, r) in added.chain(removed) {
            tracing::warn!(
                "{action}: {} of {} by {}: {}",
                r.what(),
                r.plugin,
                r.by,
                r.reason
            );
            changes.push(grant_change(action, r, note));
        }
        self.any.store(!list.revoked.is_empty(), Ordering::SeqCst);
        *current = list;
        drop(current);
        self.changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(changes);
    }

    /// The revocation covering `capability` of `pack/plugin`, if any.
    pub fn check(&self, pack: &str, plugin: &str, capability: Capability) -> Option<Revocation> {
        if !self.any.load(Ordering::SeqCst) {
            return None;
        }
        let list = self.list.read().unwrap_or_else(|p| p.into_inner());
        list.revoked
            .iter()
            .rev()
            .find(|r| r.covers(pack, plugin, capability))
            .cloned()
    }

    /// Take the grant changes not yet written to the audit log.
    pub fn take_changes(&self) -> Vec<Lifecycle> {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Reload from `path` (after the watcher saw it change). A malformed
    /// file keeps the list in force and says why: a half-edited file must
    /// not silently restore everything.
    pub fn reload(&self, path: &Path) {
        match RevocationList::load(path) {
            Ok(list) => self.replace(list, None),
            Err(e) => tracing::error!("{e}; keeping the revocations in force"),
        }
    }
}

fn grant_change(action: &str, r: &Revocation, note: Option<&str>) -> Lifecycle {
    Lifecycle::GrantChange {
        action: action.to_owned(),
        plugin: r.plugin.clone(),
        capability: r.capability.map(|c| c.to_string()),
        reason: r.reason.clone(),
        by: r.by.clone(),
        requested_at: r.at.clone(),
        note: note.map(str::to_owned),
    }
}

/// One plugin's view of the shared revocations, checked on every host call.
#[derive(Debug, Clone)]
pub struct RevocationScope {
    revocations: Arc<Revocations>,
    pack: Arc<str>,
    plugin: Arc<str>,
}

impl RevocationScope {
    /// The scope of `pack/plugin`.
    pub fn new(revocations: Arc<Revocations>, pack: Arc<str>, plugin: Arc<str>) -> Self {
        RevocationScope {
            revocations,
            pack,
            plugin,
        }
    }

    /// Why `capability` is revoked for this plugin, if it is.
    pub fn check(&self, capability: Capability) -> Option<String> {
        self.revocations
            .check(&self.pack, &self.plugin, capability)
            .map(|r| format!("revoked by {} at {}: {}", r.by, r.at, r.reason))
    }
}

/// Watch `path` and reload `revocations` whenever it changes. Keep the
/// returned watcher alive for as long as changes should apply.
pub fn watch(
    path: &Path,
    revocations: Arc<Revocations>,
) -> Result<notify::RecommendedWatcher, notify::Error> {
    use notify::Watcher;
    let dir = path.parent().unwrap_or(Path::new(".")).to_owned();
    std::fs::create_dir_all(&dir).map_err(notify::Error::io)?;
    let file = path.to_owned();
    let name = path.file_name().map(|n| n.to_owned());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            // `save` renames a temp file over the list; react to anything
            // that touches the list's name.
            Ok(event) if event.paths.iter().any(|p| p.file_name() == name.as_deref()) => {
                revocations.reload(&file);
            }
            Ok(_) => {}
            Err(e) => tracing::error!("watching {}: {e}", file.display()),
        }
    })?;
    // The directory, not the file: the file is replaced, not edited.
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// The OS user running this process, for `by`: `$USER`, `$LOGNAME`, else
/// the numeric uid (services often run without either variable).
pub fn current_user() -> String {
    use std::os::unix::fs::MetadataExt;
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            std::fs::metadata("/proc/self")
                .ok()
                .map(|m| format!("uid {}", m.uid()))
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revocation(plugin: &str, capability: Option<Capability>) -> Revocation {
        Revocation {
            plugin: plugin.into(),
            capability,
            reason: "test".into(),
            by: "alice".into(),
            at: "2026-11-22T00:00:00Z".into(),
        }
    }

    #[test]
    fn a_revocation_covers_its_plugin_and_capability_only() {
        let r = revocation("ai/enrich", Some(Capability::Http));
        assert!(r.covers("ai", "enrich", Capability::Http));
        assert!(!r.covers("ai", "enrich", Capability::Log));
        assert!(!r.covers("other", "enrich", Capability::Http));
        let any_pack = revocation("enrich", None);
        assert!(any_pack.covers("other", "enrich", Capability::State));
        assert!(!any_pack.covers("ai", "enrich2", Capability::State));
    }

    #[test]
    fn replacing_the_list_records_each_revoke_and_restore() {
        let set = Revocations::new(RevocationList::default());
        assert!(set.take_changes().is_empty());
        let mut list = RevocationList::default();
        list.revoke(revocation("enrich", Some(Capability::Http)));
        set.replace(list.clone(), None);
        assert!(set.check("ai", "enrich", Capability::Http).is_some());
        let changes = set.take_changes();
        assert!(
            matches!(&changes[..], [Lifecycle::GrantChange { action, .. }] if action == "revoke")
        );
        assert_eq!(list.restore("enrich", None).len(), 1);
        set.replace(list, None);
        assert!(set.check("ai", "enrich", Capability::Http).is_none());
        assert!(
            matches!(&set.take_changes()[..], [Lifecycle::GrantChange { action, .. }] if action == "restore")
        );
    }

    #[test]
    fn the_list_round_trips_and_a_malformed_file_names_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE);
        assert_eq!(
            RevocationList::load(&path).expect("missing is empty"),
            RevocationList::default()
        );
        let mut list = RevocationList::default();
        list.revoke(revocation("enrich", Some(Capability::Http)));
        list.save(&path).expect("saves");
        assert_eq!(RevocationList::load(&path).expect("loads"), list);
        std::fs::write(&path, "{\"revoked\": [ {\"plugin\": 3} ]}").expect("write");
        let err = RevocationList::load(&path).unwrap_err().to_string();
        assert!(err.contains(FILE) && err.contains("line 1"), "{err}");
    }
}
