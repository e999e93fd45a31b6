//! What can go wrong writing the audit log.

use std::path::PathBuf;

/// Why the audit log cannot be written. The host stops emitting when it
/// sees one (fail closed).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// An I/O operation on the log failed.
    #[error("audit log {path}: {action}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the host was doing.
        action: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another process has the log open for writing.
    #[error(
        "audit log {} is being written by another process (a running `vigil run`?); \
         a log has one writer at a time: wait for it to finish or use another `--audit` directory",
        path.display()
    )]
    Busy {
        /// The audit directory.
        path: PathBuf,
    },
    /// The existing log is damaged before its tail; appending would hide it.
    #[error(
        "audit log {path} is damaged at record {seq} ({why}); refusing to append. \
         Run `vigil audit verify --audit {path}` and keep the log as evidence; \
         point `--audit` at a new directory to continue"
    )]
    Damaged {
        /// The audit directory.
        path: PathBuf,
        /// The first bad record.
        seq: u64,
        /// What is wrong.
        why: String,
    },
}
