//! Watching a packs directory: which pack directories changed.
//!
//! Events are debounced (`notify-debouncer-full`): a burst of writes, an
//! editor's save-by-rename or a copy in progress is reported once it has
//! been quiet for the settle time, as the set of top-level entries of the
//! packs directory it touched. A half-copied directory may still be
//! reported (a copy can pause longer than the settle time); the reload
//! then refuses it and the next event, when the copy completes, loads it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

use super::reload::is_hidden;

/// A packs-directory watcher; changes are reported while it lives.
pub type PacksWatcher = Debouncer<notify::RecommendedWatcher, RecommendedCache>;

/// Watch `packs_dir` (recursively, through symlinked pack directories)
/// and call `on_change` with the pack directories a settled burst of
/// events touched. Runs `on_change` on the watcher's own thread, so a
/// reload there is off the event path.
pub fn watch_packs(
    packs_dir: &Path,
    settle: Duration,
    mut on_change: impl FnMut(BTreeSet<PathBuf>) + Send + 'static,
) -> Result<PacksWatcher, notify::Error> {
    let root = packs_dir.to_owned();
    // Events may name paths through the directory's canonical form; they
    // are mapped back to `packs_dir`'s own entries.
    let canonical = std::fs::canonicalize(packs_dir).map_err(notify::Error::io)?;
    let mut watcher = new_debouncer(
        settle,
        None,
        move |events: DebounceEventResult| match events {
            Ok(events) => {
                // Reads are not changes: a reload reads the pack's files,
                // and counting those would reload it again, for ever.
                let changes =
                    (events.iter()).filter(|e| !matches!(e.kind, notify::EventKind::Access(_)));
                let paths: Vec<PathBuf> = (changes.flat_map(|e| &e.paths))
                    .map(|p| match p.strip_prefix(&canonical) {
                        Ok(rel) => root.join(rel),
                        Err(_) => p.clone(),
                    })
                    .collect();
                let touched = pack_dirs_touched(&root, paths.iter());
                if !touched.is_empty() {
                    on_change(touched);
                }
            }
            Err(errors) => {
                for e in errors {
                    tracing::error!("watching {}: {e}", root.display());
                }
            }
        },
    )?;
    watcher.watch(packs_dir, notify::RecursiveMode::Recursive)?;
    Ok(watcher)
}

/// The top-level entries of `root` that `paths` lie in (hidden scratch
/// entries left out).
pub fn pack_dirs_touched<'a>(
    root: &Path,
    paths: impl Iterator<Item = &'a PathBuf>,
) -> BTreeSet<PathBuf> {
    (paths.filter_map(|p| p.strip_prefix(root).ok()))
        .filter_map(|rel| rel.components().next())
        .map(|first| root.join(first))
        .filter(|dir| !is_hidden(dir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_map_to_the_pack_directory_they_touch() {
        let root = Path::new("/srv/packs");
        let paths = [
            PathBuf::from("/srv/packs/starter/pack.toml"),
            PathBuf::from("/srv/packs/starter/intel/iocs.txt"),
            PathBuf::from("/srv/packs/sigma"),
            PathBuf::from("/srv/packs/.sigma.tmp/pack.toml"),
            PathBuf::from("/elsewhere/x"),
        ];
        let touched = pack_dirs_touched(root, paths.iter());
        assert_eq!(
            touched.into_iter().collect::<Vec<_>>(),
            [
                PathBuf::from("/srv/packs/sigma"),
                PathBuf::from("/srv/packs/starter")
            ]
        );
    }
}
