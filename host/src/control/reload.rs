//! Hot reload of packs by generations: build the new generation beside the
//! one running, check it, and only then make it current.
//!
//! A reload of a pack directory ([`Reloader::reload_dir`]) loads the pack
//! in full off the hot path (manifest, compile or compile cache, imports
//! against grants, pre-link, `init` run once and snapshotted), then runs
//! the pack's own test cases (`vigil test`, each on empty scratch state).
//! Only if all of that passes does it post the new generation's records on
//! the host's notice board and swap it into the [`PackSet`]; batches in
//! flight finish on the generation they started with. Anything that fails
//! leaves the running generation in place and says why: a log line, a
//! `reload-refused` audit record, the pack's status, a metric.
//!
//! Plugin state carries over: every generation of a plugin id shares the
//! host's one state store for it (`state::stores`).
//!
//! A directory holds one pack, named by its `pack.toml`; a pack's name is
//! its identity (state, findings, the audit log), so a reload that renames
//! it, or names it like another directory's pack, is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::audit::record::{ChangeKind, GenerationRef, Lifecycle, PluginChange};
use crate::load::pack::{Generation, PackSet, PackSource, PluginReport};
use crate::load::runtime::Runtime;
use crate::pack_test;
use crate::pipeline::notice::{Notice, NoticeBoard};
use crate::plugin_text::PluginText;

/// What one reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new generation is current (the pack may be new to the host).
    Swapped {
        /// Pack name.
        pack: String,
        /// The generation it replaced, if any.
        from: Option<u64>,
        /// The generation now current.
        to: u64,
    },
    /// The pack's directory is gone: it no longer runs. (A directory that
    /// is there without a `pack.toml`, mid-copy, is refused and the
    /// running generation stays.)
    Removed {
        /// Pack name.
        pack: String,
        /// Its last generation.
        generation: u64,
    },
    /// Nothing to do: the directory holds no pack and none ran from it.
    Nothing,
    /// Refused; the generation in force (if any) keeps running.
    Refused {
        /// Every problem found.
        reasons: Vec<String>,
    },
}

impl Outcome {
    /// `swapped`, `removed`, `nothing` or `refused`, as metrics label it.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Swapped { .. } => "swapped",
            Outcome::Removed { .. } => "removed",
            Outcome::Nothing => "nothing",
            Outcome::Refused { .. } => "refused",
        }
    }
}

/// "Reload every pack directory", as the service hands it to SIGHUP and
/// `POST /reload`: the trigger names who asked.
pub type ReloadAll = Arc<dyn Fn(&str) -> Vec<(PathBuf, Outcome)> + Send + Sync>;

/// The last reload of one pack directory, for `/status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DirStatus {
    /// The pack directory.
    pub dir: PathBuf,
    /// The pack that runs from it, if any.
    pub pack: Option<String>,
    /// When the last reload ended.
    pub at: Timestamp,
    /// What set it off.
    pub trigger: String,
    /// `swapped`, `removed`, `nothing` or `refused`.
    pub outcome: &'static str,
    /// Why it was refused (empty otherwise).
    pub reasons: Vec<String>,
    /// How long the reload took (after the watcher's settle time),
    /// milliseconds.
    pub took_ms: u64,
}

/// Builds, checks and swaps in pack generations (see the module docs).
pub struct Reloader {
    runtime: Runtime,
    packs: Arc<PackSet>,
    notices: Arc<NoticeBoard>,
    run_tests: bool,
    /// One reload at a time (the watcher, SIGHUP and the admin API may ask
    /// at once); also which directory holds which pack.
    dirs: Mutex<BTreeMap<PathBuf, String>>,
    status: Mutex<BTreeMap<PathBuf, DirStatus>>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

impl Reloader {
    /// A reloader over `packs`, loading with `runtime` (the host's: same
    /// engine, compile cache and state stores) and posting records on
    /// `notices`. `loaded` names the directory each running pack came
    /// from. With `run_tests`, a pack's test cases must pass before it
    /// becomes current.
    pub fn new(
        runtime: Runtime,
        packs: Arc<PackSet>,
        notices: Arc<NoticeBoard>,
        loaded: BTreeMap<PathBuf, String>,
        run_tests: bool,
    ) -> Self {
        Reloader {
            runtime,
            packs,
            notices,
            run_tests,
            dirs: Mutex::new(loaded),
            status: Mutex::default(),
        }
    }

    /// The last reload of every directory reloaded so far.
    pub fn status(&self) -> Vec<DirStatus> {
        let status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        status.values().cloned().collect()
    }

    /// Reload every pack directory under `packs_dir` and remove the packs
    /// whose directory is gone.
    pub fn reload_all(&self, packs_dir: &Path, trigger: &str) -> Vec<(PathBuf, Outcome)> {
        let mut dirs: Vec<PathBuf> = pack_dirs(packs_dir);
        let known: Vec<PathBuf> = {
            let map = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
            map.keys().cloned().collect()
        };
        for dir in known {
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        // Directories that are gone first: a pack moved to another
        // directory stops running from the old one before it is loaded
        // from the new one (otherwise its name is taken).
        dirs.sort_by_key(|d| d.exists());
        (dirs.into_iter())
            .map(|dir| {
                let outcome = self.reload_dir(&dir, trigger);
                (dir, outcome)
            })
            .collect()
    }

    /// Reload the pack in `dir` (see the module docs).
    pub fn reload_dir(&self, dir: &Path, trigger: &str) -> Outcome {
        let started = Instant::now();
        let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        let (outcome, pack) = self.reload_locked(&mut dirs, dir, trigger);
        drop(dirs);
        let took = started.elapsed();
        match &outcome {
            Outcome::Swapped { pack, from, to } => tracing::info!(
                "reload of {} ({trigger}): pack {pack} generation {} -> {to} in {} ms",
                dir.display(),
                from.map_or("none".to_owned(), |g| g.to_string()),
                took.as_millis()
            ),
            Outcome::Removed { pack, generation } => tracing::info!(
                "reload of {} ({trigger}): pack {pack} removed (was generation {generation})",
                dir.display()
            ),
            Outcome::Nothing => {}
            Outcome::Refused { reasons } => tracing::error!(
                "reload of {} ({trigger}) refused, the running generation stays: {}",
                dir.display(),
                PluginText(&reasons.join("; "))
            ),
        }
        if outcome != Outcome::Nothing {
            let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
            status.insert(
                dir.to_owned(),
                DirStatus {
                    dir: dir.to_owned(),
                    pack,
                    at: Timestamp::now(),
                    trigger: trigger.to_owned(),
                    outcome: outcome.name(),
                    reasons: match &outcome {
                        Outcome::Refused { reasons } => reasons.clone(),
                        _ => Vec::new(),
                    },
                    took_ms: duration_ms(took),
                },
            );
        }
        outcome
    }

    fn reload_locked(
        &self,
        dirs: &mut BTreeMap<PathBuf, String>,
        dir: &Path,
        trigger: &str,
    ) -> (Outcome, Option<String>) {
        let running = dirs.get(dir).cloned();
        if !dir.exists() {
            // Gone: what ran from it stops.
            let Some(name) = running else {
                return (Outcome::Nothing, None);
            };
            dirs.remove(dir);
            let Some(last) = self.packs.get(&name) else {
                return (Outcome::Nothing, None);
            };
            self.notices
                .post(Notice::Lifecycle(Lifecycle::GenerationChange {
                    pack: name.clone(),
                    trigger: trigger.to_owned(),
                    from: Some(reference(&last)),
                    to: None,
                    plugins: plugin_changes(Some(&last), None),
                }));
            self.packs.remove(&name);
            let outcome = Outcome::Removed {
                pack: name.clone(),
                generation: last.number,
            };
            return (outcome, Some(name));
        }
        if running.is_none() && !dir.join("pack.toml").is_file() {
            // Not a pack (yet): a directory being created or copied.
            return (Outcome::Nothing, None);
        }
        let source = PackSource::Dir(dir.to_owned());
        let refuse = |pack: Option<String>, reasons: Vec<String>| {
            let kept = (pack.as_deref().or(running.as_deref()))
                .and_then(|name| self.packs.get(name))
                .map(|g| reference(&g));
            self.notices
                .post(Notice::Lifecycle(Lifecycle::ReloadRefused {
                    source: dir.display().to_string(),
                    pack: pack.clone(),
                    trigger: trigger.to_owned(),
                    kept,
                    reasons: reasons.clone(),
                }));
            (Outcome::Refused { reasons }, pack.or(running.clone()))
        };
        let generation = match self.runtime.load(source.clone()) {
            Ok(generation) => generation,
            Err(errors) => {
                return refuse(None, errors.0.iter().map(ToString::to_string).collect());
            }
        };
        let name = generation.manifest.name.clone();
        if let Some(old) = running.as_ref().filter(|old| **old != name) {
            return refuse(
                Some(name.clone()),
                vec![format!(
                    "pack.toml renames pack `{old}` to `{name}`; a pack's name is its identity \
                     (state, findings, audit log): put the renamed pack in a new directory"
                )],
            );
        }
        if let Some((other, _)) = dirs.iter().find(|(d, n)| **n == name && d.as_path() != dir) {
            return refuse(
                Some(name.clone()),
                vec![format!(
                    "pack `{name}` already runs from {}; rename one (`name` in its pack.toml)",
                    other.display()
                )],
            );
        }
        if self.run_tests {
            let results = pack_test::run_listed(&self.runtime, &source, &generation.manifest.tests);
            let failed: Vec<String> = (results.iter())
                .filter(|r| !r.passed())
                .map(|r| format!("test case {r}"))
                .collect();
            if !failed.is_empty() {
                return refuse(Some(name), failed);
            }
        }
        let previous = self.packs.get(&name);
        let change = Lifecycle::GenerationChange {
            pack: name.clone(),
            trigger: trigger.to_owned(),
            from: previous.as_deref().map(reference),
            to: Some(reference(&generation)),
            plugins: plugin_changes(previous.as_deref(), Some(&generation)),
        };
        // Posted before the swap: every batch on the new generation
        // follows its records in the log (`pipeline::notice`).
        self.notices.post(Notice::Generation {
            generation: generation.clone(),
            change,
        });
        self.packs.put(generation.clone());
        dirs.insert(dir.to_owned(), name.clone());
        let outcome = Outcome::Swapped {
            pack: name.clone(),
            from: previous.map(|g| g.number),
            to: generation.number,
        };
        (outcome, Some(name))
    }
}

/// The sub-directories of `packs_dir` (one pack each), sorted; none if it
/// cannot be read.
pub fn pack_dirs(packs_dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = match std::fs::read_dir(packs_dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            // Symlinks to directories count: a symlink flip is how many
            // deployments swap a pack atomically.
            .filter(|p| p.is_dir())
            .filter(|p| !is_hidden(p))
            .collect(),
        Err(e) => {
            tracing::error!("reading packs directory {}: {e}", packs_dir.display());
            Vec::new()
        }
    };
    dirs.sort();
    dirs
}

/// Editors' and deploy tools' scratch entries (`.pack.tmp`, `.#x`).
pub fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

fn reference(generation: &Generation) -> GenerationRef {
    GenerationRef {
        generation: generation.number,
        version: generation.manifest.version.clone(),
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Per plugin id of either generation: added, removed, changed (component
/// or grants) or unchanged, with the capabilities gained and lost.
pub fn plugin_changes(from: Option<&Generation>, to: Option<&Generation>) -> Vec<PluginChange> {
    fn reports(g: Option<&Generation>) -> BTreeMap<String, &PluginReport> {
        g.map(|g| g.reports.iter().map(|r| (r.id.clone(), r)).collect())
            .unwrap_or_default()
    }
    let (before, after) = (reports(from), reports(to));
    let mut ids: Vec<&String> = before.keys().chain(after.keys()).collect();
    ids.sort();
    ids.dedup();
    (ids.into_iter())
        .map(|id| {
            let (old, new) = (before.get(id), after.get(id));
            let caps =
                |r: Option<&&PluginReport>| r.map(|r| r.effective.clone()).unwrap_or_default();
            let (old_caps, new_caps) = (caps(old), caps(new));
            let change = match (old, new) {
                (None, _) => ChangeKind::Added,
                (_, None) => ChangeKind::Removed,
                (Some(o), Some(n))
                    if o.digest == n.digest && o.grants_digest == n.grants_digest =>
                {
                    ChangeKind::Unchanged
                }
                _ => ChangeKind::Changed,
            };
            PluginChange {
                plugin: id.clone(),
                change,
                from_component: old.map(|r| r.digest.clone()),
                to_component: new.map(|r| r.digest.clone()),
                capabilities_added: (new_caps.iter())
                    .filter(|c| !old_caps.contains(c))
                    .copied()
                    .collect(),
                capabilities_removed: (old_caps.iter())
                    .filter(|c| !new_caps.contains(c))
                    .copied()
                    .collect(),
                grants_changed: old.map(|r| &r.grants_digest) != new.map(|r| &r.grants_digest),
            }
        })
        .collect()
}
