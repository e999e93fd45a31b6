//! Durable per-plugin key-value storage behind the `state` capability.
//!
//! One append-only JSON Lines file per plugin
//! (`<state_dir>/<pack>/<plugin>.state.jsonl`): each `set` or `delete`
//! appends one operation, and opening the file replays them. A torn last
//! line (the host was killed mid-write) is skipped with a warning; the file
//! is compacted on open when dead operations outnumber live keys. Values
//! survive host restarts and pack reloads because the file is keyed by pack
//! name and plugin id, not by generation.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Limits on what one plugin may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateQuota {
    /// Most live keys.
    pub max_keys: usize,
    /// Longest key, in bytes.
    pub max_key_bytes: usize,
    /// Longest value, in bytes.
    pub max_value_bytes: usize,
}

impl Default for StateQuota {
    fn default() -> Self {
        StateQuota {
            max_keys: 100_000,
            max_key_bytes: 512,
            max_value_bytes: 64 * 1024,
        }
    }
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StateStoreError {
    /// Reading or writing the file failed.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A quota in [`StateQuota`] would be exceeded.
    #[error("state quota exceeded: {0}")]
    Quota(&'static str),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Op {
    Set {
        k: String,
        v: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exp: Option<u64>,
    },
    Del {
        k: String,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    value: String,
    /// Expiry, milliseconds since the Unix epoch.
    expires_ms: Option<u64>,
}

#[derive(Debug)]
struct Inner {
    entries: HashMap<String, Entry>,
    writer: BufWriter<File>,
}

/// One plugin's persistent key-value store.
#[derive(Debug)]
pub struct StateStore {
    path: PathBuf,
    quota: StateQuota,
    inner: Mutex<Inner>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl StateStore {
    /// Open (or create) the store at `path`, replaying its operations.
    pub fn open(path: &Path, quota: StateQuota) -> Result<Self, StateStoreError> {
        let io = |source| StateStoreError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut entries = HashMap::new();
        let mut ops = 0usize;
        if let Ok(file) = File::open(path) {
            for (index, line) in BufReader::new(file).lines().enumerate() {
                let line = line.map_err(io)?;
                match serde_json::from_str::<Op>(&line) {
                    Ok(Op::Set { k, v, exp }) => {
                        entries.insert(
                            k,
                            Entry {
                                value: v,
                                expires_ms: exp,
                            },
                        );
                    }
                    Ok(Op::Del { k }) => {
                        entries.remove(&k);
                    }
                    Err(e) => tracing::warn!(
                        file = %path.display(),
                        line = index + 1,
                        error = %e,
                        "skipping an unreadable state record (torn write?)"
                    ),
                }
                ops += 1;
            }
        }
        let now = now_ms();
        entries.retain(|_, e| e.expires_ms.is_none_or(|exp| exp > now));
        let compact = ops > 2 * entries.len() + 1024;
        if compact {
            write_snapshot(path, &entries).map_err(io)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        Ok(StateStore {
            path: path.to_owned(),
            quota,
            inner: Mutex::new(Inner {
                entries,
                writer: BufWriter::new(file),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `entries` half-updated
        // (each operation is a single insert/remove), so a poisoned lock is safe to reuse.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live value of `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        let now = now_ms();
        let inner = self.lock();
        let entry = inner.entries.get(key)?;
        entry
            .expires_ms
            .is_none_or(|exp| exp > now)
            .then(|| entry.value.clone())
    }

    /// Store `value` under `key`, expiring after `ttl_seconds` if given.
    pub fn set(
        &self,
        key: &str,
        value: &str,
        ttl_seconds: Option<u64>,
    ) -> Result<(), StateStoreError> {
        if key.len() > self.quota.max_key_bytes {
            return Err(StateStoreError::Quota("key too long"));
        }
        if value.len() > self.quota.max_value_bytes {
            return Err(StateStoreError::Quota("value too large"));
        }
        let now = now_ms();
        let mut inner = self.lock();
        if !inner.entries.contains_key(key) && inner.entries.len() >= self.quota.max_keys {
            // Make room from expired entries before refusing.
            inner
                .entries
                .retain(|_, e| e.expires_ms.is_none_or(|exp| exp > now));
            if inner.entries.len() >= self.quota.max_keys {
                return Err(StateStoreError::Quota("too many keys"));
            }
        }
        // Guest-controlled TTL: saturate instead of overflowing.
        let expires_ms = ttl_seconds.map(|t| now.saturating_add(t.saturating_mul(1000)));
        let op = Op::Set {
            k: key.to_owned(),
            v: value.to_owned(),
            exp: expires_ms,
        };
        self.append(&mut inner, &op)?;
        inner.entries.insert(
            key.to_owned(),
            Entry {
                value: value.to_owned(),
                expires_ms,
            },
        );
        Ok(())
    }

    /// Remove `key`.
    pub fn delete(&self, key: &str) -> Result<(), StateStoreError> {
        let mut inner = self.lock();
        if inner.entries.remove(key).is_some() {
            self.append(&mut inner, &Op::Del { k: key.to_owned() })?;
        }
        Ok(())
    }

    /// Write buffered operations to the file. Called after every plugin call.
    pub fn flush(&self) -> Result<(), StateStoreError> {
        self.lock()
            .writer
            .flush()
            .map_err(|source| StateStoreError::Io {
                path: self.path.clone(),
                source,
            })
    }

    fn append(&self, inner: &mut Inner, op: &Op) -> Result<(), StateStoreError> {
        let io = |source| StateStoreError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(op).map_err(|e| io(std::io::Error::other(e)))?;
        line.push(b'\n');
        inner.writer.write_all(&line).map_err(io)
    }
}

impl Drop for StateStore {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "state not saved");
        }
    }
}

/// Replace the file with one `set` per live entry, atomically.
fn write_snapshot(path: &Path, entries: &HashMap<String, Entry>) -> std::io::Result<()> {
    let tmp = path.with_extension("jsonl.compact");
    let mut out = BufWriter::new(File::create(&tmp)?);
    for (k, e) in entries {
        let op = Op::Set {
            k: k.clone(),
            v: e.value.clone(),
            exp: e.expires_ms,
        };
        serde_json::to_writer(&mut out, &op).map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_survive_reopening_and_deletes_stick() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.state.jsonl");
        {
            let store = StateStore::open(&path, StateQuota::default()).expect("open");
            store.set("a", "1", None).expect("set");
            store.set("b", "2", None).expect("set");
            store.delete("b").expect("delete");
        }
        let store = StateStore::open(&path, StateQuota::default()).expect("reopen");
        assert_eq!(store.get("a").as_deref(), Some("1"));
        assert_eq!(store.get("b"), None);
    }

    #[test]
    fn a_torn_last_line_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.state.jsonl");
        std::fs::write(
            &path,
            "{\"op\":\"set\",\"k\":\"a\",\"v\":\"1\"}\n{\"op\":\"set\",\"k\":\"b\",",
        )
        .expect("write");
        let store = StateStore::open(&path, StateQuota::default()).expect("open");
        assert_eq!(store.get("a").as_deref(), Some("1"));
        assert_eq!(store.get("b"), None);
    }

    #[test]
    fn expired_entries_read_as_absent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = StateStore::open(&dir.path().join("s"), StateQuota::default()).expect("open");
        store.set("gone", "x", Some(0)).expect("set");
        assert_eq!(store.get("gone"), None);
    }

    #[test]
    fn quotas_refuse_oversized_values_and_too_many_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let quota = StateQuota {
            max_keys: 1,
            max_key_bytes: 8,
            max_value_bytes: 4,
        };
        let store = StateStore::open(&dir.path().join("s"), quota).expect("open");
        assert!(matches!(
            store.set("k", "12345", None),
            Err(StateStoreError::Quota(_))
        ));
        assert!(matches!(
            store.set("much-too-long-key", "1", None),
            Err(StateStoreError::Quota(_))
        ));
        store.set("k", "1", None).expect("first key fits");
        store
            .set("k", "2", None)
            .expect("overwriting is not a new key");
        assert!(matches!(
            store.set("j", "1", None),
            Err(StateStoreError::Quota(_))
        ));
    }
}
