//! Revoking a capability of a running plugin, restoring it, and the
//! audit trail of both.
//!
//! # The list and its live effect
//!
//! `vigil revoke` and `vigil restore` edit one file, `revocations.json` in
//! the state directory (written atomically: temp file, fsync, rename; edits
//! are serialized by an exclusive lock on [`EDIT_LOCK`]). It is the
//! persisted truth: a host loads it at start, and a running `vigil run`
//! watches it (inotify through `notify`) and swaps the new list into the
//! shared [`Revocations`] within milliseconds. Every host call goes through
//! the audit tape, which asks [`RevocationScope::check`] before running it,
//! so the next call after a revocation is refused with the interface's
//! `access-denied` and recorded as denied with the reason. The capability
//! stays linked: a revoked plugin keeps loading and running (its detections
//! keep flowing); only the revoked calls are refused. A restore the host
//! observes also lifts the plugin's quarantine, if any
//! ([`RevocationScope::restored_since`]), so an operator's restore always
//! gives the plugin a fresh start.
//!
//! # The grant-change trail: one record per change, exactly once
//!
//! Each revoke and each restore is one `grant-change` audit record with its
//! own action, plugin, capability, reason, actor (`by`) and time, whether or
//! not a host is running. The design:
//!
//! 1. **An outbox in the list.** The command adds the change to the list's
//!    `pending` outbox, with an id greater than any before it, in the same
//!    atomic write that changes `revoked`. A change that is in force is
//!    therefore always either recorded or pending; it cannot be lost.
//! 2. **One recorder per state directory.** Only the process holding an
//!    exclusive lock on [`RECORDER_LOCK`] writes grant changes: a running
//!    host holds it for its whole run (whatever its audit directory); a
//!    `vigil revoke`/`restore` takes it for a moment when no host has it. A
//!    recorder appends a `grant-change` record for each pending change, in
//!    id order, to its audit log, fsyncs, and only then removes those
//!    changes from the outbox. So the command records its change itself
//!    when no host runs (into the policy's audit log for that state dir),
//!    and leaves it to the running host otherwise, which records it with
//!    the command's fields before the next batch it writes. A change left
//!    pending when a host stops before seeing it is recorded by the next
//!    recorder (the next `vigil run` at start, or the next command). A host
//!    that finds the role taken (a command holding it for a moment, or
//!    another host on the same state dir) tries again whenever something
//!    is pending, so it takes the role as soon as it is free.
//! 3. **The log knows what it holds.** Each `grant-change` record carries
//!    the change id, and the audit log remembers the highest id it holds
//!    (read back from its last segment at open; checkpoints carry it across
//!    segments). A recorder skips pending changes at or below it, so a
//!    recorder killed between the fsync and the outbox update does not
//!    record the change a second time. Two writers never share a log: the
//!    log itself is locked by its writer (`audit/writer.rs`); a command
//!    that finds the log busy leaves the change pending. (The id check is
//!    per log: a change written to one log by a recorder killed before it
//!    cleared the outbox would be recorded again by a later recorder
//!    writing to a different audit directory.)
//!
//! A restore that ends several revocations (no `--capability`) is one
//! change and one record; its `note` names the revocations it ended. The
//! revocations in force when a pack loads are noted in a separate
//! `revocations-in-force` record, never as grant changes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use serde::{Deserialize, Serialize};

use crate::atomic_file::{self, Durability};
use crate::audit::record::Lifecycle;
use crate::audit::{AuditError, Auditor};
use crate::capability::Capability;
use crate::capability::tape::RevocationCheck;
use crate::load::policy::AuditConfig;

/// File name of the revocation list in the state directory.
pub const FILE: &str = "revocations.json";
/// Lock file serializing edits of the list (held for milliseconds).
pub const EDIT_LOCK: &str = "revocations.lock";
/// Lock file held by the process recording this state directory's grant
/// changes: a running host, or a `vigil revoke`/`restore` for a moment.
pub const RECORDER_LOCK: &str = "grant-recorder.lock";

/// One revocation in force (defined with the audit record that lists
/// them: the audit log does not import this module).
pub use crate::audit::record::Revocation;

/// Whether `spec` (`plugin-id`, `pack/plugin-id`, or `pack/*` for every
/// plugin of a pack) names `pack/plugin`.
pub fn names(spec: &str, pack: &str, plugin: &str) -> bool {
    match spec.split_once('/') {
        Some((p, "*")) => p == pack,
        Some((p, id)) => p == pack && id == plugin,
        None => spec == plugin,
    }
}

impl Revocation {
    /// Whether this revocation covers `capability` of `pack/plugin`.
    pub fn covers(&self, pack: &str, plugin: &str, capability: Capability) -> bool {
        self.capability.is_none_or(|c| c == capability) && names(&self.plugin, pack, plugin)
    }

    /// `http` or `every capability`, for messages.
    pub fn what(&self) -> String {
        what(self.capability)
    }
}

fn what(capability: Option<Capability>) -> String {
    capability.map_or_else(|| "every capability".to_owned(), |c| c.to_string())
}

/// Whether a change revokes or restores (defined with the audit record
/// that carries it: the audit log does not import this module).
pub use crate::audit::record::GrantAction as Action;

/// One revoke or restore as the operator asked for it: what becomes its
/// `grant-change` record. Waits in [`RevocationList::pending`] until a
/// recorder has written it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantChange {
    /// Greater than the id of every change before it in this state dir.
    pub id: u64,
    /// Revoke or restore.
    pub action: Action,
    /// `plugin-id` or `pack/plugin-id`.
    pub plugin: String,
    /// The capability; `None`: every capability (for a restore: every
    /// revocation of the plugin).
    pub capability: Option<Capability>,
    /// Why, as given with `--reason`.
    pub reason: String,
    /// Who asked.
    pub by: String,
    /// When it was asked.
    pub at: Timestamp,
    /// For a restore: the revocations it ended, for the record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ends: Vec<String>,
}

impl GrantChange {
    /// Its `grant-change` audit record.
    pub fn record(&self) -> Lifecycle {
        Lifecycle::GrantChange {
            action: self.action,
            plugin: self.plugin.clone(),
            capability: self.capability,
            reason: self.reason.clone(),
            by: self.by.clone(),
            requested_at: self.at,
            note: (!self.ends.is_empty()).then(|| format!("ends {}", self.ends.join("; "))),
            change: Some(self.id),
        }
    }
}

/// What `vigil revoke` or `vigil restore` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRequest {
    /// Revoke or restore.
    pub action: Action,
    /// `plugin-id` or `pack/plugin-id`.
    pub plugin: String,
    /// One capability, or `None` for all.
    pub capability: Option<Capability>,
    /// Why.
    pub reason: String,
    /// Who asks (the CLI uses [`current_user`]).
    pub by: String,
    /// When (the CLI uses the current time).
    pub at: Timestamp,
}

/// Where a change's `grant-change` record went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Written by this command to the audit log in this directory.
    Now(PathBuf),
    /// Left pending for the running host that records this state dir's
    /// grant changes; it writes the record before its next batch.
    ByRunningHost,
    /// Left pending because the audit log could not be written now (why);
    /// the next recorder writes it.
    Later(String),
}

/// The outcome of [`apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The change, as it is (or will be) recorded.
    pub change: GrantChange,
    /// Where its record went.
    pub recorded: Recorded,
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
    /// A restore named nothing that is revoked.
    #[error("nothing to restore: {plugin} has no revocation{} (see {FILE})", capability.map(|c| format!(" of {c}")).unwrap_or_default())]
    NothingToRestore {
        /// The plugin as given.
        plugin: String,
        /// The capability as given.
        capability: Option<Capability>,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RevocationError + '_ {
    move |source| RevocationError::Io {
        path: path.to_owned(),
        source,
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The persisted list of revocations and the outbox of changes not yet
/// recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationList {
    /// Revocations in force, oldest first.
    pub revoked: Vec<Revocation>,
    /// Changes not yet known to be in an audit log, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<GrantChange>,
    /// Id of the latest change.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_change: u64,
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
        let io = io_error(path);
        let dir = path.parent().unwrap_or(Path::new("."));
        if let Err(e) = std::fs::create_dir_all(dir) {
            return Err(io(e));
        }
        let json = serde_json::to_vec_pretty(self).expect("a revocation list serializes");
        atomic_file::write(path, &json, Durability::Synced).map_err(io)
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

    /// Make `request` (revoke, or restore what it names) and put it in the
    /// outbox with a fresh id. A restore that names nothing revoked is
    /// refused and changes nothing.
    pub fn change(&mut self, request: ChangeRequest) -> Result<GrantChange, RevocationError> {
        let ends = match request.action {
            Action::Revoke => {
                self.revoke(Revocation {
                    plugin: request.plugin.clone(),
                    capability: request.capability,
                    reason: request.reason.clone(),
                    by: request.by.clone(),
                    at: request.at,
                });
                Vec::new()
            }
            Action::Restore => {
                let removed = self.restore(&request.plugin, request.capability);
                if removed.is_empty() {
                    return Err(RevocationError::NothingToRestore {
                        plugin: request.plugin,
                        capability: request.capability,
                    });
                }
                (removed.iter())
                    .map(|r| format!("{} revoked by {} at {}", r.what(), r.by, r.at))
                    .collect()
            }
        };
        // Microseconds since the epoch, or one more than the last id: ids
        // keep growing even if the file is deleted and started again.
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        self.last_change = now.max(self.last_change + 1);
        let change = GrantChange {
            id: self.last_change,
            action: request.action,
            plugin: request.plugin,
            capability: request.capability,
            reason: request.reason,
            by: request.by,
            at: request.at,
            ends,
        };
        self.pending.push(change.clone());
        Ok(change)
    }

    /// Drop pending changes with ids up to `through` (they are in an audit
    /// log); returns whether any was dropped.
    pub fn prune(&mut self, through: u64) -> bool {
        let before = self.pending.len();
        self.pending.retain(|c| c.id > through);
        self.pending.len() != before
    }
}

/// An exclusive lock (`flock`) on a file of the state dir, released when
/// dropped or when the process dies.
#[derive(Debug)]
struct FileLock {
    _file: File,
}

impl FileLock {
    fn open(path: &Path) -> std::io::Result<File> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
    }

    /// Wait for the lock.
    fn acquire(path: &Path) -> std::io::Result<FileLock> {
        let file = Self::open(path)?;
        file.lock()?;
        Ok(FileLock { _file: file })
    }

    /// Take the lock if nobody holds it.
    fn try_acquire(path: &Path) -> std::io::Result<Option<FileLock>> {
        let file = Self::open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(FileLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// Append a `grant-change` record for each of `pending` that `auditor`'s
/// log does not hold yet, in id order, and make them durable. Returns the
/// highest change id the log now holds.
fn record_pending(auditor: &mut Auditor, pending: &[GrantChange]) -> Result<u64, AuditError> {
    let mut changes: Vec<&GrantChange> = pending.iter().collect();
    changes.sort_by_key(|c| c.id);
    let mut wrote = false;
    for change in changes {
        if change.id > auditor.last_grant_change() {
            auditor.lifecycle(change.record())?;
            wrote = true;
        }
    }
    if wrote {
        auditor.sync()?;
    }
    Ok(auditor.last_grant_change())
}

/// `vigil revoke` / `vigil restore`: make `request` in the list of
/// `state_dir` (running hosts apply it within a second) and record it.
/// When no host records this state dir's grant changes, the record is
/// written here, to the audit log in `audit_dir` (opened with `audit`);
/// otherwise the running host writes it. See the module documentation.
pub fn apply(
    state_dir: &Path,
    audit: &AuditConfig,
    audit_dir: &Path,
    request: ChangeRequest,
) -> Result<Applied, RevocationError> {
    let path = state_dir.join(FILE);
    // Held throughout, so two commands never interleave, and a command
    // never takes the recorder lock while another holds it.
    let lock_path = state_dir.join(EDIT_LOCK);
    let _edit = FileLock::acquire(&lock_path).map_err(io_error(&lock_path))?;
    let mut list = RevocationList::load(&path)?;
    let change = list.change(request)?;
    list.save(&path)?;

    let recorder_path = state_dir.join(RECORDER_LOCK);
    let recorded = match FileLock::try_acquire(&recorder_path) {
        Err(e) => Recorded::Later(format!("{}: {e}", recorder_path.display())),
        Ok(None) => Recorded::ByRunningHost,
        Ok(Some(_recorder)) => match Auditor::open(audit, audit_dir) {
            Err(e) => Recorded::Later(e.to_string()),
            Ok(mut auditor) => {
                let written = record_pending(&mut auditor, &list.pending).and_then(|through| {
                    auditor.release()?;
                    Ok(through)
                });
                match written {
                    Err(e) => Recorded::Later(e.to_string()),
                    Ok(through) => {
                        // Should this fail, the log still knows what it
                        // holds: the next recorder skips these.
                        if list.prune(through)
                            && let Err(e) = list.save(&path)
                        {
                            tracing::warn!("{e}; recorded changes stay listed as pending");
                        }
                        Recorded::Now(audit_dir.to_owned())
                    }
                }
            }
        },
    };
    Ok(Applied { change, recorded })
}

/// A capability restored while the host runs: lifts quarantines.
#[derive(Debug, Clone)]
struct Restored {
    /// `plugin-id` or `pack/plugin-id`.
    plugin: String,
    /// Who restored it.
    by: String,
}

/// Who records grant changes in this process.
#[derive(Debug, Default)]
struct Recording {
    /// Where the recorder lock lives (`None`: this host never records).
    state_dir: Option<PathBuf>,
    /// Held once this host is the recorder.
    lock: Option<FileLock>,
    /// Whether this host tried to take the role yet.
    tried: bool,
    /// Already said that another process records.
    warned: bool,
}

/// The revocations in force in a running host, shared by every plugin call.
#[derive(Debug, Default)]
pub struct Revocations {
    list: RwLock<RevocationList>,
    /// Fast path: most hosts have nothing revoked.
    any: AtomicBool,
    /// A new list was put in force since the recorder last looked.
    changed: AtomicBool,
    /// Restores observed while running, oldest first.
    restores: Mutex<Vec<Restored>>,
    /// `restores.len()`, readable without the lock.
    restore_count: AtomicUsize,
    recording: Mutex<Recording>,
}

impl Revocations {
    /// Start with `list` (read at host start). This host never records
    /// grant changes (see [`Revocations::load`]).
    pub fn new(list: RevocationList) -> Arc<Revocations> {
        let revocations = Arc::new(Revocations::default());
        revocations
            .any
            .store(!list.revoked.is_empty(), Ordering::SeqCst);
        *revocations.list.write().unwrap_or_else(|p| p.into_inner()) = list;
        revocations
    }

    /// Start with the list of `state_dir`; [`Revocations::record`] may
    /// make this host the recorder of that state dir's grant changes.
    pub fn load(state_dir: &Path) -> Result<Arc<Revocations>, RevocationError> {
        let revocations = Revocations::new(RevocationList::load(&state_dir.join(FILE))?);
        revocations
            .recording
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .state_dir = Some(state_dir.to_owned());
        Ok(revocations)
    }

    /// Put `list` in force. Restores (revocations it no longer has) are
    /// kept for [`RevocationScope::restored_since`].
    pub fn replace(&self, list: RevocationList) {
        let mut current = self.list.write().unwrap_or_else(|p| p.into_inner());
        for r in (list.revoked.iter()).filter(|r| !current.revoked.contains(r)) {
            tracing::warn!(
                "revoke: {} of {} by {}: {}",
                r.what(),
                r.plugin,
                r.by,
                r.reason
            );
        }
        let mut restores = self.restores.lock().unwrap_or_else(|p| p.into_inner());
        // Restored = no longer revoked for the same plugin and capability: a
        // second `vigil revoke` replaces the entry (new reason, time), which
        // is not a restore.
        let same =
            |a: &Revocation, b: &Revocation| a.plugin == b.plugin && a.capability == b.capability;
        for r in (current.revoked.iter()).filter(|r| !list.revoked.iter().any(|n| same(r, n))) {
            // The restore's own actor and reason, from the outbox (a
            // recorder may have emptied it already).
            let change = (list.pending.iter().rev())
                .find(|c| c.action == Action::Restore && c.plugin == r.plugin);
            let (by, reason) = change.map_or(("an operator", ""), |c| (&*c.by, &*c.reason));
            tracing::warn!("restore: {} of {} by {by}: {reason}", r.what(), r.plugin);
            restores.push(Restored {
                plugin: r.plugin.clone(),
                by: by.to_owned(),
            });
        }
        self.restore_count.store(restores.len(), Ordering::SeqCst);
        drop(restores);
        self.any.store(!list.revoked.is_empty(), Ordering::SeqCst);
        *current = list;
        // Inside the write lock: a call that sees the new list was made
        // after this flag was set, so the recorder writes the change
        // before the batch holding that call.
        self.changed.store(true, Ordering::SeqCst);
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

    /// Every revocation in force, oldest first.
    pub fn in_force(&self) -> Vec<Revocation> {
        let list = self.list.read().unwrap_or_else(|p| p.into_inner());
        list.revoked.clone()
    }

    /// Record the grant changes pending in the list in force, if this host
    /// is (or can now become) the recorder of its state dir: called at the
    /// start of a run (which takes the recorder role for the whole run),
    /// by the audit stage before each batch unit, and at the end. Does
    /// nothing when nothing changed since the last call.
    pub fn record(&self, auditor: &mut Auditor) -> Result<(), AuditError> {
        let changed = self.changed.swap(false, Ordering::SeqCst);
        let mut recording = self.recording.lock().unwrap_or_else(|p| p.into_inner());
        let Some(dir) = recording.state_dir.clone() else {
            return Ok(());
        };
        if recording.lock.is_none() {
            // Try at the first call (run start), then whenever there is
            // something to record: the role frees up when its holder ends.
            let first = !recording.tried;
            recording.tried = true;
            if !(first || changed || self.has_pending()) {
                return Ok(());
            }
            let path = dir.join(RECORDER_LOCK);
            match FileLock::try_acquire(&path) {
                Ok(Some(lock)) => recording.lock = Some(lock),
                Ok(None) => {
                    if !recording.warned {
                        recording.warned = true;
                        tracing::warn!(
                            "another process records the grant changes of {} (another `vigil run` with this state dir?); until it ends they are in its audit log, not this one",
                            dir.display()
                        );
                    }
                    return Ok(());
                }
                Err(e) => {
                    tracing::error!("{}: {e}; grant changes not recorded here", path.display());
                    return Ok(());
                }
            }
        } else if !changed {
            return Ok(());
        }
        let pending = {
            let list = self.list.read().unwrap_or_else(|p| p.into_inner());
            list.pending.clone()
        };
        if pending.is_empty() {
            return Ok(());
        }
        let through = record_pending(auditor, &pending)?;
        drop(recording);
        if pending.iter().any(|c| c.id <= through)
            && let Err(e) = prune(&dir, through)
        {
            // The log knows what it holds; nothing is recorded twice.
            tracing::warn!("{e}; recorded grant changes stay listed as pending");
        }
        Ok(())
    }

    fn has_pending(&self) -> bool {
        !(self.list.read().unwrap_or_else(|p| p.into_inner()))
            .pending
            .is_empty()
    }

    /// Reload from `path` (after the watcher saw it change). A malformed
    /// file keeps the list in force and says why: a half-edited file must
    /// not silently restore everything.
    pub fn reload(&self, path: &Path) {
        match RevocationList::load(path) {
            Ok(list) => self.replace(list),
            Err(e) => tracing::error!("{e}; keeping the revocations in force"),
        }
    }
}

/// Remove pending changes up to `through` from the list of `state_dir`.
fn prune(state_dir: &Path, through: u64) -> Result<(), RevocationError> {
    let lock_path = state_dir.join(EDIT_LOCK);
    let _edit = FileLock::acquire(&lock_path).map_err(io_error(&lock_path))?;
    let path = state_dir.join(FILE);
    let mut list = RevocationList::load(&path)?;
    if list.prune(through) {
        list.save(&path)?;
    }
    Ok(())
}

/// One plugin's view of the shared revocations, checked on every host call.
#[derive(Debug, Clone)]
pub struct RevocationScope {
    revocations: Arc<Revocations>,
    pack: Arc<str>,
    plugin: Arc<str>,
}

impl RevocationCheck for RevocationScope {
    fn revoked(&self, capability: Capability) -> Option<String> {
        self.check(capability)
    }

    fn restored_since(&self, seen: &mut usize) -> Option<String> {
        RevocationScope::restored_since(self, seen)
    }
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

    /// Who restored a capability of this plugin among the restores after
    /// the first `*seen` the host observed, if anyone did; advances `*seen`.
    pub fn restored_since(&self, seen: &mut usize) -> Option<String> {
        if self.revocations.restore_count.load(Ordering::SeqCst) == *seen {
            return None;
        }
        let restores = (self.revocations.restores.lock()).unwrap_or_else(|p| p.into_inner());
        let found = (restores.get(*seen..).unwrap_or_default().iter().rev())
            .find(|r| names(&r.plugin, &self.pack, &self.plugin))
            .map(|r| r.by.clone());
        *seen = restores.len();
        found
    }
}

/// How long the watcher lets a burst of events on the list settle before
/// reloading it once: `save` writes a temp file and renames it over the
/// list, several events; well inside the second a revocation may take.
const SETTLE: Duration = Duration::from_millis(50);

/// The watcher of the revocation list; changes apply while it lives.
pub type Watcher = Debouncer<notify::RecommendedWatcher, RecommendedCache>;

/// Watch `path` and reload `revocations` whenever it changes. Keep the
/// returned watcher alive for as long as changes should apply.
pub fn watch(path: &Path, revocations: Arc<Revocations>) -> Result<Watcher, notify::Error> {
    let dir = path.parent().unwrap_or(Path::new(".")).to_owned();
    std::fs::create_dir_all(&dir).map_err(notify::Error::io)?;
    let file = path.to_owned();
    let name = path.file_name().map(|n| n.to_owned());
    let mut watcher = new_debouncer(SETTLE, None, move |events: DebounceEventResult| {
        match events {
            // `save` renames a temp file over the list; react to anything
            // that touches the list's name.
            Ok(events)
                if (events.iter().flat_map(|e| &e.paths))
                    .any(|p| p.file_name() == name.as_deref()) =>
            {
                revocations.reload(&file);
            }
            Ok(_) => {}
            Err(errors) => {
                for e in errors {
                    tracing::error!("watching {}: {e}", file.display());
                }
            }
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
    use crate::audit::query;
    use crate::audit::record::Record;

    fn revocation(plugin: &str, capability: Option<Capability>) -> Revocation {
        Revocation {
            plugin: plugin.into(),
            capability,
            reason: "test".into(),
            by: "alice".into(),
            at: "2026-11-22T00:00:00Z".parse().expect("a time"),
        }
    }

    fn request(action: Action, capability: Option<Capability>, by: &str) -> ChangeRequest {
        ChangeRequest {
            action,
            plugin: "enrich".into(),
            capability,
            reason: format!("{} because", action.name()),
            by: by.into(),
            at: format!("2026-11-22T0{}:00:00Z", by.len())
                .parse()
                .expect("a time"),
        }
    }

    /// `(action, by, reason, requested_at)` of every grant-change record.
    fn grant_changes(audit: &Path) -> Vec<(String, String, String, String)> {
        let mut out = Vec::new();
        query::for_each(audit, |entry, _| {
            if let Record::Lifecycle(Lifecycle::GrantChange {
                action,
                by,
                reason,
                requested_at,
                ..
            }) = entry.record
            {
                out.push((
                    action.name().to_owned(),
                    by,
                    reason,
                    requested_at.to_string(),
                ));
            }
        })
        .expect("log reads");
        out
    }

    #[test]
    fn a_pack_wildcard_names_every_plugin_of_that_pack_only() {
        assert!(names("starter/*", "starter", "brute-force"));
        assert!(names("starter/*", "starter", "ioc-match"));
        assert!(!names("starter/*", "sigma", "brute-force"));
        assert!(names("starter/ioc-match", "starter", "ioc-match"));
        assert!(!names("starter/ioc-match", "starter", "brute-force"));
        assert!(names("ioc-match", "any", "ioc-match"));
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
    fn each_change_waits_in_the_outbox_with_a_growing_id_and_a_restore_of_nothing_is_refused() {
        let mut list = RevocationList::default();
        let revoke = list
            .change(request(Action::Revoke, Some(Capability::Http), "alice"))
            .expect("revokes");
        let restore = list
            .change(request(Action::Restore, None, "bob"))
            .expect("restores");
        assert!(restore.id > revoke.id);
        assert!(list.revoked.is_empty());
        assert_eq!(list.pending, vec![revoke.clone(), restore.clone()]);
        assert_eq!(
            restore.ends,
            vec!["http revoked by alice at 2026-11-22T05:00:00Z"]
        );
        let err = list
            .change(request(Action::Restore, None, "bob"))
            .expect_err("nothing left to restore");
        assert!(err.to_string().contains("nothing to restore"), "{err}");
        assert_eq!(list.pending.len(), 2, "a refused restore is not a change");
        assert!(list.prune(revoke.id));
        assert_eq!(list.pending, vec![restore]);
    }

    #[test]
    fn a_restore_seen_by_the_host_is_reported_once_to_the_plugins_it_names() {
        let mut list = RevocationList::default();
        list.change(request(Action::Revoke, Some(Capability::Http), "alice"))
            .expect("revokes");
        let set = Revocations::new(list.clone());
        let scope = |plugin: &str| RevocationScope::new(set.clone(), "ai".into(), plugin.into());
        let (mut seen, mut other_seen) = (0, 0);
        assert_eq!(scope("enrich").restored_since(&mut seen), None);
        list.change(request(Action::Restore, None, "bob"))
            .expect("restores");
        set.replace(list);
        assert!(set.check("ai", "enrich", Capability::Http).is_none());
        assert_eq!(
            scope("enrich").restored_since(&mut seen),
            Some("bob".to_owned())
        );
        assert_eq!(scope("enrich").restored_since(&mut seen), None, "once");
        assert_eq!(scope("other").restored_since(&mut other_seen), None);
    }

    #[test]
    fn revoking_the_same_capability_again_is_not_a_restore() {
        let mut list = RevocationList::default();
        list.change(request(Action::Revoke, Some(Capability::Http), "alice"))
            .expect("revokes");
        let set = Revocations::new(list.clone());
        let scope = RevocationScope::new(set.clone(), "ai".into(), "enrich".into());
        let mut seen = 0;
        assert_eq!(scope.restored_since(&mut seen), None);
        list.change(request(Action::Revoke, Some(Capability::Http), "carol"))
            .expect("revokes again");
        set.replace(list);
        assert!(set.check("ai", "enrich", Capability::Http).is_some());
        assert_eq!(scope.restored_since(&mut seen), None, "still revoked");
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
        list.change(request(Action::Revoke, Some(Capability::Http), "alice"))
            .expect("revokes");
        list.save(&path).expect("saves");
        assert_eq!(RevocationList::load(&path).expect("loads"), list);
        std::fs::write(&path, "{\"revoked\": [ {\"plugin\": 3} ]}").expect("write");
        let err = RevocationList::load(&path).unwrap_err().to_string();
        assert!(err.contains(FILE) && err.contains("line 1"), "{err}");
    }

    #[test]
    fn with_no_host_each_command_records_its_own_change_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (state, audit) = (dir.path().join("state"), dir.path().join("audit"));
        let config = AuditConfig::default();
        let applied = apply(
            &state,
            &config,
            &audit,
            request(Action::Revoke, Some(Capability::Http), "alice"),
        )
        .expect("revokes");
        assert_eq!(applied.recorded, Recorded::Now(audit.clone()));
        let applied = apply(
            &state,
            &config,
            &audit,
            request(Action::Restore, None, "bob"),
        )
        .expect("restores");
        assert_eq!(applied.recorded, Recorded::Now(audit.clone()));
        assert_eq!(
            grant_changes(&audit),
            vec![
                (
                    "revoke".into(),
                    "alice".into(),
                    "revoke because".into(),
                    "2026-11-22T05:00:00Z".into()
                ),
                (
                    "restore".into(),
                    "bob".into(),
                    "restore because".into(),
                    "2026-11-22T03:00:00Z".into()
                ),
            ]
        );
        let list = RevocationList::load(&state.join(FILE)).expect("list");
        assert!(list.pending.is_empty(), "{list:?}");
        // A host starting now has nothing left to record.
        let host = Revocations::load(&state).expect("loads");
        let mut auditor = Auditor::open(&config, &audit).expect("opens");
        host.record(&mut auditor).expect("records");
        auditor.release().expect("closes");
        assert_eq!(grant_changes(&audit).len(), 2);
        crate::audit::verify::verify(&audit).expect("the log verifies");
    }

    #[test]
    fn with_a_recording_host_the_command_leaves_its_change_to_the_host_which_records_it_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (state, audit) = (dir.path().join("state"), dir.path().join("audit"));
        let host_audit = dir.path().join("host-audit");
        let config = AuditConfig::default();
        let host = Revocations::load(&state).expect("loads");
        let mut host_log = Auditor::open(&config, &host_audit).expect("opens");
        // At run start the host takes the recorder role.
        host.record(&mut host_log).expect("nothing to record yet");
        for (action, by) in [(Action::Revoke, "alice"), (Action::Restore, "bob")] {
            let applied =
                apply(&state, &config, &audit, request(action, None, by)).expect("changes");
            assert_eq!(applied.recorded, Recorded::ByRunningHost);
            // What the watcher does, then the audit stage (twice: the second
            // finds nothing new).
            host.reload(&state.join(FILE));
            host.record(&mut host_log).expect("records");
            host.reload(&state.join(FILE));
            host.record(&mut host_log).expect("nothing new");
        }
        host_log.release().expect("closes");
        assert!(
            !audit.exists(),
            "the command did not write a log of its own"
        );
        let by_host = grant_changes(&host_audit);
        assert_eq!(
            by_host,
            vec![
                (
                    "revoke".into(),
                    "alice".into(),
                    "revoke because".into(),
                    "2026-11-22T05:00:00Z".into()
                ),
                (
                    "restore".into(),
                    "bob".into(),
                    "restore because".into(),
                    "2026-11-22T03:00:00Z".into()
                ),
            ]
        );
        let list = RevocationList::load(&state.join(FILE)).expect("list");
        assert!(list.pending.is_empty(), "{list:?}");
    }

    #[test]
    fn a_change_recorded_but_still_pending_after_a_crash_is_not_recorded_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (state, audit) = (dir.path().join("state"), dir.path().join("audit"));
        let config = AuditConfig::default();
        let mut list = RevocationList::default();
        list.change(request(Action::Revoke, None, "alice"))
            .expect("revokes");
        list.save(&state.join(FILE)).expect("saves");
        // Recorded, then "killed" before the outbox was emptied.
        let mut auditor = Auditor::open(&config, &audit).expect("opens");
        record_pending(&mut auditor, &list.pending).expect("records");
        auditor.release().expect("closes");
        let host = Revocations::load(&state).expect("loads");
        let mut auditor = Auditor::open(&config, &audit).expect("reopens");
        assert_eq!(auditor.last_grant_change(), list.last_change);
        host.record(&mut auditor).expect("records");
        auditor.release().expect("closes");
        assert_eq!(grant_changes(&audit).len(), 1);
        let list = RevocationList::load(&state.join(FILE)).expect("list");
        assert!(list.pending.is_empty(), "pruned: {list:?}");
    }
}
