//! Appending to the audit log: segments, group commit, torn-tail repair.
//!
//! Layout of an audit directory:
//!
//! ```text
//! 00000001.jsonl 00000002.jsonl ...   segments; the chain runs across them
//! head                                 {"seq":N,"hash":...}: last fsynced record
//! components/<sha256>.wasm             every component that ran, by digest
//! lock                                 locked (flock) by the one process writing
//! ```
//!
//! One writer at a time: [`AuditLog::open`] takes an exclusive lock on
//! `lock` and keeps it until the log is dropped (the kernel releases it
//! when the process dies). A second writer would chain its records from a
//! stale last hash and tear the other's lines, so it is refused with
//! [`AuditError::Busy`] instead. Readers (`verify`, `show`, `replay`) take
//! no lock.
//!
//! Durability: [`AuditLog::commit`] hands every buffered line to the kernel
//! (`write(2)`) before it returns, and the dispatcher emits a batch's
//! findings only after that, so a killed process never emitted a finding
//! that is not in the log. `fdatasync` runs at most `fsync_interval` later
//! (a background thread; interval zero syncs inside `commit`), which bounds
//! what a power loss can take. After each sync the `head` file records the
//! last durable record, so `verify` can tell a log cut short from a log
//! that ended there.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::chain::{self, GENESIS};
use super::record::{Checkpoint, Lifecycle, Record};
use super::segments;
use crate::atomic_file::{self, Durability};

pub use super::error::AuditError;

/// How the log is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// Longest time a committed record may wait for `fdatasync`.
    pub fsync_interval: Duration,
    /// A segment is closed once it reaches this many bytes (at a unit boundary).
    pub segment_bytes: u64,
    /// A checkpoint record is written after this many records.
    pub checkpoint_every: u64,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            fsync_interval: Duration::from_millis(10),
            segment_bytes: 64 << 20,
            checkpoint_every: 10_000,
        }
    }
}

/// What the background syncer shares with the writer.
#[derive(Debug)]
struct SyncState {
    file: Arc<File>,
    /// Last record handed to the kernel.
    written: (u64, String),
    /// Last record known durable.
    synced: u64,
    /// The first failure, with what was being done; every later commit
    /// reports it (fail closed).
    error: Option<(&'static str, String)>,
    stop: bool,
}

/// The `head` file, which only ever moves forward.
///
/// Both the sync thread and the writer (at rotation, close, or when
/// `fsync_interval` is zero) sync records and then advance the anchor. The
/// anchor is written through this one owner, under its lock, so two
/// writers never share the temporary file (one's `rename` used to find the
/// other's file gone: "No such file or directory", which stopped runs at
/// segment rotation), and an older sync can never overwrite a newer anchor.
#[derive(Debug)]
struct HeadAnchor {
    path: PathBuf,
    /// Sequence number the file names.
    seq: Mutex<u64>,
}

impl HeadAnchor {
    /// Name record `seq` (known durable) as the last synced one, unless
    /// the anchor already names a later record.
    fn advance(&self, seq: u64, hash: &str) -> std::io::Result<()> {
        let mut current = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        if seq <= *current {
            return Ok(());
        }
        write_head(&self.path, seq, hash)?;
        *current = seq;
        Ok(())
    }
}

#[derive(Debug)]
struct Syncer {
    shared: Arc<(Mutex<SyncState>, Condvar)>,
    head: Arc<HeadAnchor>,
    thread: Option<JoinHandle<()>>,
}

/// An open audit log, ready to append.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    options: WriterOptions,
    segment: u64,
    segment_path: PathBuf,
    file: Arc<File>,
    segment_len: u64,
    seq: u64,
    last_hash: String,
    since_checkpoint: u64,
    buf: Vec<u8>,
    json: Vec<u8>,
    syncer: Syncer,
    /// Highest grant-change id the log holds (see `revocation.rs`).
    last_grant_change: u64,
    /// Held for the writer's life: the single-writer lock.
    _lock: File,
}

fn io_err<'p>(
    path: &'p Path,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> AuditError + 'p {
    move |source| AuditError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}

/// The current time as RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

impl AuditLog {
    /// Open (or create) the log in `dir`. A torn tail left by a killed host
    /// is cut back to the last complete unit and the cut is recorded as a
    /// `tail-repaired` lifecycle record.
    pub fn open(dir: &Path, options: WriterOptions) -> Result<AuditLog, AuditError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir, "creating the directory"))?;
        // Before reading the tail: another writer's half-written line is not torn.
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path, "opening the lock file"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(AuditError::Busy {
                    path: dir.to_owned(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io_err(&lock_path, "locking the log")(e));
            }
        }
        let list = segments::list(dir).map_err(io_err(dir, "listing segments"))?;
        let (segment, tail) = match list.last() {
            None => (1, None),
            Some(&(index, ref path)) => (index, Some(segments::scan_tail(dir, path, &list)?)),
        };
        let segment_path = segments::path(dir, segment);
        // Never truncate on open: the tail is cut below, only when torn.
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&segment_path)
            .map_err(io_err(&segment_path, "opening the segment"))?;
        let (seq, last_hash, mut segment_len, repair, last_grant_change) = match tail {
            None => (0, GENESIS.to_owned(), 0, None, 0),
            Some(t) => (t.seq, t.hash, t.good_len, t.repair, t.last_grant_change),
        };
        if repair.is_some() {
            file.set_len(segment_len)
                .map_err(io_err(&segment_path, "cutting the torn tail"))?;
        }
        let mut file_ref = &file;
        segment_len = file_ref
            .seek(SeekFrom::End(0))
            .map_err(io_err(&segment_path, "seeking to the end"))?;
        let file = Arc::new(file);
        let syncer = Syncer::start(
            dir.join("head"),
            file.clone(),
            (seq, last_hash.clone()),
            options.fsync_interval,
        );
        let mut log = AuditLog {
            dir: dir.to_owned(),
            options,
            segment,
            segment_path,
            file,
            segment_len,
            seq,
            last_hash,
            since_checkpoint: 0,
            buf: Vec::with_capacity(1 << 20),
            json: Vec::with_capacity(64 << 10),
            syncer,
            last_grant_change,
            _lock: lock,
        };
        if let Some(repair) = repair {
            tracing::warn!(
                "audit log {}: cut a torn tail of {} bytes ({}); recorded",
                log.segment_path.display(),
                repair.bytes_removed,
                repair.reason
            );
            let record = Record::Lifecycle(Lifecycle::TailRepaired {
                segment: log.segment_path.display().to_string(),
                offset: segment_len,
                bytes_removed: repair.bytes_removed,
                records_removed: repair.records_removed,
                reason: repair.reason,
            });
            log.append(&record)?;
            log.commit()?;
        }
        Ok(log)
    }

    /// The audit directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Sequence number of the last record appended.
    pub fn last_seq(&self) -> u64 {
        self.seq
    }

    /// Highest grant-change id among the log's records (0: none).
    pub fn last_grant_change(&self) -> u64 {
        self.last_grant_change
    }

    /// Buffer `record`; returns its sequence number. Nothing reaches the
    /// file before [`AuditLog::commit`].
    pub fn append(&mut self, record: &Record) -> Result<u64, AuditError> {
        if let Record::Lifecycle(Lifecycle::GrantChange {
            change: Some(id), ..
        }) = record
        {
            self.last_grant_change = self.last_grant_change.max(*id);
        }
        let mut json = std::mem::take(&mut self.json);
        json.clear();
        serde_json::to_writer(&mut json, record).map_err(|e| AuditError::Io {
            path: self.segment_path.clone(),
            action: "serializing a record",
            source: std::io::Error::other(e),
        })?;
        let seq = self.append_json(&json);
        self.json = json;
        Ok(seq)
    }

    /// Buffer a record already serialized as a JSON object.
    pub fn append_json(&mut self, record_json: &[u8]) -> u64 {
        self.seq += 1;
        self.last_hash = chain::encode(
            &mut self.buf,
            self.seq,
            &now_rfc3339(),
            &self.last_hash,
            record_json,
        );
        self.since_checkpoint += 1;
        self.seq
    }

    /// Hand every buffered record to the kernel. Call at a unit boundary:
    /// this is also where checkpoints and segment rotation happen.
    pub fn commit(&mut self) -> Result<(), AuditError> {
        if self.since_checkpoint >= self.options.checkpoint_every {
            self.checkpoint()?;
        }
        self.write_out()?;
        if self.segment_len >= self.options.segment_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<(), AuditError> {
        let record = Record::Checkpoint(Checkpoint {
            records: self.seq,
            head: self.last_hash.clone(),
            segment: self.segment,
            last_grant_change: self.last_grant_change,
        });
        self.append(&record)?;
        self.since_checkpoint = 0;
        Ok(())
    }

    fn write_out(&mut self) -> Result<(), AuditError> {
        if let Some((action, e)) = self.syncer.error() {
            return Err(AuditError::Io {
                path: self.segment_path.clone(),
                action,
                source: std::io::Error::other(e),
            });
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        (&*self.file)
            .write_all(&self.buf)
            .map_err(io_err(&self.segment_path, "writing records"))?;
        self.segment_len += self.buf.len() as u64;
        self.buf.clear();
        self.syncer.written(self.seq, &self.last_hash);
        if self.options.fsync_interval.is_zero() {
            self.sync_now()?;
        }
        Ok(())
    }

    /// Commit and `fdatasync` now, without waiting for the group commit.
    pub fn sync(&mut self) -> Result<(), AuditError> {
        self.commit()?;
        self.sync_now()
    }

    fn sync_now(&mut self) -> Result<(), AuditError> {
        self.file
            .sync_data()
            .map_err(io_err(&self.segment_path, "fdatasync"))?;
        let head = &self.syncer.head;
        self.syncer
            .synced(self.seq, &self.last_hash)
            .map_err(io_err(&head.path, "writing the head anchor"))
    }

    /// Close this segment and continue the chain in the next one, which
    /// opens with a checkpoint.
    fn rotate(&mut self) -> Result<(), AuditError> {
        self.sync_now()?;
        self.segment += 1;
        self.segment_path = segments::path(&self.dir, self.segment);
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&self.segment_path)
            .map_err(io_err(&self.segment_path, "creating the next segment"))?;
        // The new segment's name must survive a power loss with its records.
        sync_dir(&self.dir).map_err(io_err(&self.dir, "syncing the audit directory"))?;
        self.file = Arc::new(file);
        self.segment_len = 0;
        self.syncer.switch(self.file.clone());
        self.checkpoint()?;
        self.write_out()
    }

    /// Store a component's bytes under its digest, once, so `vigil replay`
    /// can run what was recorded.
    pub fn store_component(&self, digest: &str, bytes: &[u8]) -> Result<(), AuditError> {
        let dir = self.dir.join("components");
        let path = dir.join(format!("{digest}.wasm"));
        if path.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&dir).map_err(io_err(&dir, "creating the component store"))?;
        atomic_file::write(&path, bytes, Durability::Atomic)
            .map_err(io_err(&path, "storing a component"))
    }

    /// Commit, sync, and stop the background syncer.
    pub fn close(mut self) -> Result<(), AuditError> {
        self.commit()?;
        self.sync_now()?;
        self.syncer.stop();
        Ok(())
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.syncer.stop();
    }
}

impl Syncer {
    fn start(head: PathBuf, file: Arc<File>, written: (u64, String), interval: Duration) -> Syncer {
        let synced = written.0;
        // What the log holds at open is what `head` may name (a torn tail
        // was cut already); it is re-anchored at the next sync.
        let head = Arc::new(HeadAnchor {
            path: head,
            seq: Mutex::new(0),
        });
        let shared = Arc::new((
            Mutex::new(SyncState {
                file,
                written,
                synced,
                error: None,
                stop: false,
            }),
            Condvar::new(),
        ));
        let thread = (!interval.is_zero()).then(|| {
            let (shared, head) = (shared.clone(), head.clone());
            std::thread::Builder::new()
                .name("vigil-audit-sync".into())
                .spawn(move || sync_loop(&shared, &head, interval))
                .expect("spawning the audit sync thread")
        });
        Syncer {
            shared,
            head,
            thread,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.shared.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn error(&self) -> Option<(&'static str, String)> {
        self.lock().error.clone()
    }

    fn written(&self, seq: u64, hash: &str) {
        let mut state = self.lock();
        state.written = (seq, hash.to_owned());
        self.shared.1.notify_one();
    }

    /// Record a sync done by the writer itself (interval zero, rotation,
    /// close) and advance the anchor.
    fn synced(&self, seq: u64, hash: &str) -> std::io::Result<()> {
        {
            let mut state = self.lock();
            state.synced = state.synced.max(seq);
        }
        self.head.advance(seq, hash)
    }

    fn switch(&self, file: Arc<File>) {
        self.lock().file = file;
    }

    fn stop(&mut self) {
        self.lock().stop = true;
        self.shared.1.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn sync_loop(shared: &(Mutex<SyncState>, Condvar), head: &HeadAnchor, interval: Duration) {
    let (lock, wake) = shared;
    let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        while state.written.0 <= state.synced && !state.stop {
            state = wake.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        if state.written.0 <= state.synced && state.stop {
            return;
        }
        // Let a group of commits gather before paying for one sync.
        if !state.stop {
            drop(state);
            std::thread::sleep(interval);
            state = lock.lock().unwrap_or_else(|p| p.into_inner());
        }
        // `file` and `written` are read together: after a rotation both
        // name the new segment (the writer synced the old one itself).
        let (file, (seq, hash)) = (state.file.clone(), state.written.clone());
        drop(state);
        let result = (file.sync_data().map_err(|e| ("fdatasync", e)))
            .and_then(|()| (head.advance(seq, &hash)).map_err(|e| ("writing the head anchor", e)));
        state = lock.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => state.synced = state.synced.max(seq),
            Err((action, e)) => {
                state.error = Some((action, e.to_string()));
                return;
            }
        }
    }
}

/// Write the anchor file atomically and durably: the temporary file is
/// synced before the rename and the directory after it, so a power loss
/// leaves the old anchor or the new one, never an empty file.
fn write_head(path: &Path, seq: u64, hash: &str) -> std::io::Result<()> {
    let line = format!("{{\"seq\":{seq},\"hash\":\"{hash}\"}}\n");
    atomic_file::write(path, line.as_bytes(), Durability::Synced)
}

/// Make the directory's entries (a rename, a new segment) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::verify::verify;

    /// Before `HeadAnchor`, the sync thread and a rotation wrote `head`
    /// through the same temporary file at once, and a run died within a
    /// few thousand records with "fdatasync: No such file or directory".
    #[test]
    fn rotating_tiny_segments_under_a_running_sync_loop_never_fails_and_verifies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = WriterOptions {
            fsync_interval: Duration::from_micros(50),
            segment_bytes: 1024,
            checkpoint_every: 64,
        };
        let mut log = AuditLog::open(dir.path(), options).expect("open");
        let units = 6_000;
        for i in 0..units {
            log.append(&Record::Lifecycle(Lifecycle::HostStop {
                reason: format!("unit {i}"),
            }))
            .expect("append");
            log.commit()
                .unwrap_or_else(|e| panic!("commit {i} failed: {e}"));
        }
        let last = log.last_seq();
        log.close().expect("close");
        let v = verify(dir.path()).expect("the rotated log verifies");
        assert!(v.segments > 500, "{v:?}");
        assert_eq!(v.anchored, Some(last), "head names the last record");
    }

    #[test]
    fn a_second_writer_is_refused_while_the_first_holds_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = AuditLog::open(dir.path(), WriterOptions::default()).expect("open");
        let err = AuditLog::open(dir.path(), WriterOptions::default()).expect_err("busy");
        assert!(matches!(err, AuditError::Busy { .. }), "{err}");
        assert!(err.to_string().contains("another process"), "{err}");
        log.close().expect("close");
        AuditLog::open(dir.path(), WriterOptions::default()).expect("free again");
    }

    #[test]
    fn the_highest_grant_change_id_survives_reopening_and_segment_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = WriterOptions {
            segment_bytes: 512,
            ..WriterOptions::default()
        };
        let grant_change = |id| {
            Record::Lifecycle(Lifecycle::GrantChange {
                action: crate::audit::record::GrantAction::Revoke,
                plugin: "p".into(),
                capability: None,
                reason: "r".into(),
                by: "alice".into(),
                requested_at: "2026-11-22T00:00:00Z".parse().expect("a time"),
                note: None,
                change: Some(id),
            })
        };
        let mut log = AuditLog::open(dir.path(), options).expect("open");
        assert_eq!(log.last_grant_change(), 0);
        log.append(&grant_change(7)).expect("append");
        log.commit().expect("commit");
        log.close().expect("close");
        let mut log = AuditLog::open(dir.path(), options).expect("reopen");
        assert_eq!(log.last_grant_change(), 7);
        // Enough other records to leave the grant change segments behind.
        for i in 0..40 {
            log.append(&Record::Lifecycle(Lifecycle::HostStop {
                reason: format!("filler {i}"),
            }))
            .expect("append");
            log.commit().expect("commit");
        }
        log.close().expect("close");
        assert!(segments::list(dir.path()).expect("list").len() > 3);
        let log = AuditLog::open(dir.path(), options).expect("reopen");
        assert_eq!(log.last_grant_change(), 7, "told by the checkpoints");
        log.close().expect("close");
        verify(dir.path()).expect("verifies");
    }

    #[test]
    fn the_head_anchor_never_moves_backwards() {
        let dir = tempfile::tempdir().expect("tempdir");
        let head = HeadAnchor {
            path: dir.path().join("head"),
            seq: Mutex::new(0),
        };
        head.advance(7, "h7").expect("advance");
        head.advance(5, "h5").expect("an older sync is ignored");
        let text = std::fs::read_to_string(&head.path).expect("read");
        assert_eq!(text.trim(), r#"{"seq":7,"hash":"h7"}"#);
    }
}
