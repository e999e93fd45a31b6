//! The open plugin state stores of a host: one [`StateStore`] per plugin
//! identity (pack name and plugin id), shared by every generation of that
//! plugin.
//!
//! redb lets one process hold a database file open once; a reload that
//! opened the store again while the previous generation still ran would
//! fail, or (with another engine) give two writers one file. The registry
//! hands out the store already open instead, and lets it close when the
//! last generation using it is gone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use crate::state::store::{StateQuota, StateStore, StateStoreError};

/// The state stores open under one state directory.
#[derive(Debug)]
pub struct StateStores {
    dir: PathBuf,
    open: Mutex<HashMap<PathBuf, Weak<StateStore>>>,
}

impl StateStores {
    /// Stores kept under `dir` (`<dir>/<pack>/<plugin>.state.redb`).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StateStores {
            dir: dir.into(),
            open: Mutex::default(),
        }
    }

    /// The directory the stores live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store of `pack`'s plugin `plugin`: the one already open if a
    /// generation holds it (its quota stays the one it was opened with:
    /// the operator policy does not change under a running host), else
    /// opened with `quota`.
    pub fn open(
        &self,
        pack: &str,
        plugin: &str,
        quota: StateQuota,
    ) -> Result<Arc<StateStore>, StateStoreError> {
        let path = self.dir.join(pack).join(format!("{plugin}.state.redb"));
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = open.get(&path).and_then(Weak::upgrade) {
            return Ok(store);
        }
        // Opened under the lock: two loads racing for one identity get the
        // same store, never two.
        let store = Arc::new(StateStore::open(&path, quota)?);
        open.retain(|_, s| s.strong_count() > 0);
        open.insert(path, Arc::downgrade(&store));
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_identity_gets_one_store_until_every_holder_is_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stores = StateStores::new(dir.path());
        let first = stores
            .open("pack", "a", StateQuota::default())
            .expect("open");
        first.set("k", "v", None).expect("set");
        // A second generation of the same plugin shares the open store
        // (opening the file again would fail: redb holds it).
        let second = stores
            .open("pack", "a", StateQuota::default())
            .expect("open");
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(second.get("k").expect("get").as_deref(), Some("v"));
        // Another identity has its own.
        let other = stores
            .open("pack", "b", StateQuota::default())
            .expect("open");
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(other.get("k").expect("get"), None);
        // Once every holder is gone the file is closed, and opens again.
        drop((first, second));
        let again = stores
            .open("pack", "a", StateQuota::default())
            .expect("reopen");
        assert_eq!(again.get("k").expect("get").as_deref(), Some("v"));
    }
}
