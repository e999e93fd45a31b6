//! Replacing a file whole: readers (a watcher, a concurrent host, a
//! restarted one) see the old contents or the new, never half.
//!
//! `tempfile` does the temporary name in the same directory and the
//! rename; this adds the two fsyncs a power loss needs when the caller
//! asks for durability.

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Whether the new contents must survive a power loss once this returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Synced before the rename, and the directory after it (the audit
    /// log's head anchor, the revocation list).
    Synced,
    /// Atomic for readers only (caches, content-addressed copies that are
    /// written again if lost).
    Atomic,
}

/// Replace `path` with `bytes`.
pub fn write(path: &Path, bytes: &[u8], durability: Durability) -> std::io::Result<()> {
    let dir = (path.parent())
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    if durability == Durability::Synced {
        tmp.as_file().sync_data()?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    if durability == Durability::Synced {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("head");
        write(&path, b"one", Durability::Synced).expect("write");
        write(&path, b"two", Durability::Atomic).expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let names: Vec<_> = (std::fs::read_dir(dir.path()).expect("ls"))
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["head"]);
    }
}
