//! `vigil:plugin/files`: read-only files below the granted directories of
//! the plugin's own pack.
//!
//! Grant (operator policy): `files = { dirs = ["intel/"], max_file_bytes = N }`.
//! `dirs` are relative to the pack directory; an empty list grants nothing.
//! A plugin reads `intel/iocs.txt` by that path; any path that is not below
//! a granted directory is refused with `access-denied`.
//!
//! Why a Vigil interface and not WASI preopens: `wasi:filesystem` is a set of
//! resources (descriptors, directory streams, input streams) whose every
//! method would have to be intercepted to enforce read-only access and to
//! record what was read, and a preopen hands the guest's libc a whole
//! directory tree to stat and walk. One synchronous call per file is bound
//! the same way by every guest toolchain, and it is exactly one recorded host
//! call, which replay answers from the log (the `http` interface is shaped
//! the same way for the same reasons).
//!
//! Containment: each granted directory is opened once at load as a
//! `cap_std::fs::Dir`, and every path is resolved beneath that handle
//! (`openat2` with `RESOLVE_BENEATH` where the kernel has it, cap-std's own
//! walk elsewhere), so `..`, absolute paths and symlinks that lead out of the
//! directory fail inside the kernel rather than in a string check that a
//! rename could race. Files are opened non-blocking and checked to be
//! regular files on the open handle, so a FIFO cannot stall the call and a
//! device cannot be read.
//!
//! Recording: `read` is recorded with its path, size and SHA-256, not the
//! bytes (a 16 MiB intel list per batch would swamp the log); the bytes are
//! kept once per digest in the audit directory's `files/` store before the
//! invocation that read them is written, and replay answers from there.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt as _};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use wasmtime::component::{HasData, Linker};

use super::{CallView, Capability, HostCapability, Setup, SetupMode};
use crate::atomic_file::{self, Durability};
use crate::bindings::vigil::plugin::files as wit;
use crate::capability::tape::{RecordedError, Refusal, Tape};

/// Largest file a plugin may read when the grant sets no `max_file_bytes`.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 16 << 20;

/// Scope of a `files` grant, as the operator writes it and the audit log
/// records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesGrant {
    /// Directories of the pack the plugin may read below, e.g. `["intel/"]`.
    #[serde(default)]
    pub dirs: Vec<String>,
    /// Largest file the plugin may read, bytes (default 16 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_file_bytes: Option<u64>,
}

/// Where a pack's files are: on disk, or compiled into the binary. The
/// borrowed view of `pack::PackSource` this module needs (it cannot name
/// `pack`, which depends on it).
#[derive(Debug, Clone, Copy)]
pub enum PackFiles<'a> {
    /// The pack directory.
    Dir(&'a Path),
    /// The embedded starter pack's files (relative path, contents).
    Embedded(&'static [(&'static str, &'static [u8])]),
}

/// A resolved `files` grant: the granted directories opened once, shared by
/// every call of the plugin.
#[derive(Debug)]
pub struct FilesPolicy {
    roots: Vec<Root>,
    max_file_bytes: u64,
    /// The audit directory's content store (`None`: no audit log).
    store: Option<PathBuf>,
}

#[derive(Debug)]
struct Root {
    /// Normalised directory, no trailing slash: `intel` or `rules/windows`.
    prefix: String,
    access: Access,
}

#[derive(Debug)]
enum Access {
    Disk(Dir),
    Embedded(&'static [(&'static str, &'static [u8])]),
}

/// What the audit log holds for one `read`.
#[derive(Debug, Serialize, Deserialize)]
struct ReadRecord {
    bytes: u64,
    sha256: String,
}

impl FilesPolicy {
    /// Open the granted directories of `pack`. `store` is where read
    /// contents are kept for replay. Errors name the directory and say what
    /// to change.
    pub fn resolve(
        grant: &FilesGrant,
        pack: PackFiles<'_>,
        store: Option<PathBuf>,
    ) -> Result<FilesPolicy, String> {
        let mut roots = Vec::new();
        for dir in &grant.dirs {
            let prefix = normalise(dir.trim_end_matches('/')).map_err(|why| {
                format!("files grant `dirs` entry {dir:?}: {why}; name a directory of the pack, e.g. \"intel/\"")
            })?;
            let access = match &pack {
                PackFiles::Dir(root) => {
                    let pack_dir = Dir::open_ambient_dir(root, ambient_authority())
                        .map_err(|e| format!("pack directory {}: {e}", root.display()))?;
                    Access::Disk(pack_dir.open_dir(&prefix).map_err(|e| {
                        format!(
                            "files grant `dirs` entry {dir:?}: {} is not a directory inside \
                             the pack ({e})",
                            root.join(&prefix).display()
                        )
                    })?)
                }
                PackFiles::Embedded(files) => {
                    if !is_embedded_dir(files, &prefix) {
                        return Err(format!(
                            "files grant `dirs` entry {dir:?}: the embedded pack has no such directory"
                        ));
                    }
                    Access::Embedded(files)
                }
            };
            roots.push(Root { prefix, access });
        }
        Ok(FilesPolicy {
            roots,
            max_file_bytes: grant.max_file_bytes.unwrap_or(DEFAULT_MAX_FILE_BYTES),
            store,
        })
    }

    /// A policy for replay: nothing is opened (the tape answers every
    /// call); `read` contents come from the audit directory's store.
    pub fn replay(store: PathBuf) -> FilesPolicy {
        FilesPolicy {
            roots: Vec::new(),
            max_file_bytes: 0,
            store: Some(store),
        }
    }

    /// The granted root `path` lies in and the rest of the path below it
    /// (empty for the root itself).
    fn locate<'p>(&self, path: &'p str) -> Result<(&Root, &'p str), Refusal<wit::Error>> {
        normalise(path).map_err(|why| denied(format!("{path:?}: {why}")))?;
        self.roots
            .iter()
            .find_map(|root| {
                let rest = path.strip_prefix(root.prefix.as_str())?;
                if rest.is_empty() {
                    Some((root, ""))
                } else {
                    rest.strip_prefix('/').map(|rest| (root, rest))
                }
            })
            .ok_or_else(|| denied(format!("{path:?} is not below a granted directory")))
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, Refusal<wit::Error>> {
        let (root, rest) = self.locate(path)?;
        let limit = self.max_file_bytes;
        let bytes = match &root.access {
            Access::Disk(dir) => {
                if rest.is_empty() {
                    return Err(denied(format!("{path:?} is a directory")));
                }
                let mut options = OpenOptions::new();
                // Non-blocking: opening a FIFO for reading would otherwise
                // wait for a writer, past any deadline.
                options.read(true).custom_flags(libc::O_NONBLOCK);
                let file = dir
                    .open_with(rest, &options)
                    .map_err(|e| io_refusal(path, &e))?;
                let meta = file.metadata().map_err(|e| io_refusal(path, &e))?;
                if !meta.is_file() {
                    return Err(denied(format!(
                        "{path:?} is not a regular file ({:?})",
                        meta.file_type()
                    )));
                }
                if meta.len() > limit {
                    return Err(too_large(path, meta.len(), limit));
                }
                let mut bytes = Vec::with_capacity(meta.len() as usize);
                // `take`: the file may grow between the check and the read.
                (file.take(limit + 1))
                    .read_to_end(&mut bytes)
                    .map_err(|e| io_refusal(path, &e))?;
                if bytes.len() as u64 > limit {
                    return Err(too_large(path, bytes.len() as u64, limit));
                }
                bytes
            }
            Access::Embedded(files) => {
                let (_, bytes) = files
                    .iter()
                    .find(|(name, _)| *name == path)
                    .ok_or_else(|| {
                        if is_embedded_dir(files, path) {
                            denied(format!("{path:?} is a directory"))
                        } else {
                            Refusal {
                                error: wit::Error::NotFound,
                                detail: Some(format!("{path:?} is not in the embedded pack")),
                            }
                        }
                    })?;
                if bytes.len() as u64 > limit {
                    return Err(too_large(path, bytes.len() as u64, limit));
                }
                bytes.to_vec()
            }
        };
        Ok(bytes)
    }

    fn list(&self, path: &str) -> Result<Vec<String>, Refusal<wit::Error>> {
        let (root, rest) = self.locate(path)?;
        let mut names = match &root.access {
            Access::Disk(dir) => {
                let sub;
                let dir = if rest.is_empty() {
                    dir
                } else {
                    sub = dir.open_dir(rest).map_err(|e| io_refusal(path, &e))?;
                    &sub
                };
                let mut names = Vec::new();
                for entry in dir.entries().map_err(|e| io_refusal(path, &e))? {
                    let entry = entry.map_err(|e| io_refusal(path, &e))?;
                    let kind = entry.file_type().map_err(|e| io_refusal(path, &e))?;
                    let Ok(name) = entry.file_name().into_string() else {
                        continue; // not nameable through a WIT string
                    };
                    if kind.is_file() {
                        names.push(name);
                    } else if kind.is_dir() {
                        names.push(format!("{name}/"));
                    }
                }
                names
            }
            Access::Embedded(files) => {
                let below = format!("{path}/");
                let names: Vec<String> = files
                    .iter()
                    .filter_map(|(name, _)| name.strip_prefix(&below))
                    .map(|rest| match rest.split_once('/') {
                        Some((dir, _)) => format!("{dir}/"),
                        None => rest.to_owned(),
                    })
                    .collect();
                if names.is_empty() {
                    return Err(wit::Error::NotFound.into());
                }
                names
            }
        };
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Keep `bytes` in the content store under their digest, once.
    fn keep(&self, sha256: &str, bytes: &[u8]) -> Result<(), Refusal<wit::Error>> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let path = store.join(sha256);
        if path.exists() {
            return Ok(());
        }
        // Synced: the invocation that names this digest is durable in the
        // log soon after, and replay needs the bytes as much as the record.
        std::fs::create_dir_all(store)
            .and_then(|()| atomic_file::write(&path, bytes, Durability::Synced))
            .map_err(|e| Refusal {
                error: wit::Error::Failed("the host could not record the file".into()),
                detail: Some(format!("storing {} for replay: {e}", path.display())),
            })
    }

    /// The stored content a recorded `read` returned, checked against its digest.
    fn stored(&self, record: ReadRecord) -> Result<Vec<u8>, String> {
        let store = self.store.as_ref().ok_or("no content store")?;
        let path = store.join(&record.sha256);
        let bytes =
            std::fs::read(&path).map_err(|e| format!("stored file {}: {e}", path.display()))?;
        if hex::encode(Sha256::digest(&bytes)) != record.sha256 {
            return Err(format!(
                "stored file {} does not hash to its name",
                path.display()
            ));
        }
        Ok(bytes)
    }
}

/// Check that `path` is a plain relative `/`-separated path: no leading
/// `/`, no `\`, no NUL, no empty, `.` or `..` segment. Returns it unchanged.
fn normalise(path: &str) -> Result<String, &'static str> {
    if path.is_empty() {
        return Err("the path is empty");
    }
    if path.starts_with('/') {
        return Err("absolute paths are refused");
    }
    if path.contains('\\') || path.contains('\0') {
        return Err("`\\` and NUL are refused; separate with `/`");
    }
    if path
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err("empty, `.` and `..` segments are refused");
    }
    Ok(path.to_owned())
}

fn is_embedded_dir(files: &[(&str, &[u8])], path: &str) -> bool {
    let below = format!("{path}/");
    files.iter().any(|(name, _)| name.starts_with(&below))
}

fn denied(detail: String) -> Refusal<wit::Error> {
    Refusal {
        error: wit::Error::AccessDenied,
        detail: Some(detail),
    }
}

fn too_large(path: &str, size: u64, limit: u64) -> Refusal<wit::Error> {
    Refusal {
        error: wit::Error::TooLarge,
        detail: Some(format!(
            "{path:?} has {size} bytes, more than the grant's max_file_bytes ({limit})"
        )),
    }
}

/// An I/O error as the guest sees it; the full text goes to the record.
fn io_refusal(path: &str, e: &std::io::Error) -> Refusal<wit::Error> {
    use std::io::ErrorKind;
    let error = match e.kind() {
        ErrorKind::NotFound => wit::Error::NotFound,
        // cap-std reports a path that leads out of the directory (through
        // `..` in a symlink, or an absolute symlink) as permission denied;
        // `ELOOP` is a symlink met where none may be followed.
        ErrorKind::PermissionDenied | ErrorKind::NotADirectory | ErrorKind::IsADirectory => {
            wit::Error::AccessDenied
        }
        // `ELOOP`: a symlink met where none may be followed; `ENXIO`: a
        // socket (or a device without a driver) opened as a file.
        _ if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENXIO)) => {
            wit::Error::AccessDenied
        }
        // The guest learns the kind of failure, not the host's paths.
        kind => wit::Error::Failed(kind.to_string()),
    };
    Refusal {
        error,
        detail: Some(format!("{path:?}: {e}")),
    }
}

impl RecordedError for wit::Error {
    fn code(&self) -> String {
        match self {
            wit::Error::AccessDenied => "access-denied".into(),
            wit::Error::NotFound => "not-found".into(),
            wit::Error::TooLarge => "too-large".into(),
            wit::Error::Failed(why) => format!("failed: {why}"),
        }
    }
    fn from_code(code: &str) -> Option<Self> {
        match code {
            "access-denied" => Some(wit::Error::AccessDenied),
            "not-found" => Some(wit::Error::NotFound),
            "too-large" => Some(wit::Error::TooLarge),
            _ => code
                .strip_prefix("failed: ")
                .map(|why| wit::Error::Failed(why.to_owned())),
        }
    }
    fn access_denied() -> Self {
        wit::Error::AccessDenied
    }
}

/// Per-call files context.
#[derive(Debug, Clone)]
pub struct FilesCtx {
    policy: Arc<FilesPolicy>,
}

impl FilesCtx {
    /// A context over the resolved grant.
    pub fn new(policy: Arc<FilesPolicy>) -> Self {
        FilesCtx { policy }
    }
}

/// Borrowed view implementing the generated `Host` trait.
pub struct Files<'a> {
    ctx: &'a mut FilesCtx,
    tape: &'a mut Tape,
}

impl wit::Host for Files<'_> {
    fn read(&mut self, path: String) -> Result<Vec<u8>, wit::Error> {
        let policy = &*self.ctx.policy;
        self.tape.call_summarised(
            Capability::Files,
            "read",
            json!({ "path": path }),
            || {
                let bytes = policy.read(&path)?;
                let sha256 = hex::encode(Sha256::digest(&bytes));
                policy.keep(&sha256, &bytes)?;
                Ok((bytes, sha256))
            },
            |(bytes, sha256)| {
                json!(ReadRecord {
                    bytes: bytes.len() as u64,
                    sha256: sha256.clone(),
                })
            },
            |(bytes, _)| bytes,
            |recorded| {
                let record: ReadRecord = serde_json::from_value(recorded)
                    .map_err(|e| format!("recorded read does not fit: {e}"))?;
                policy.stored(record)
            },
        )
    }

    fn list_dir(&mut self, path: String) -> Result<Vec<String>, wit::Error> {
        let policy = &*self.ctx.policy;
        self.tape.call_detailed(
            Capability::Files,
            "list-dir",
            json!({ "path": path }),
            || policy.list(&path),
        )
    }
}

/// `HasData` marker for the files capability.
pub struct FilesData;

impl HasData for FilesData {
    type Data<'a> = Files<'a>;
}

impl HostCapability for FilesData {
    const SUMMARY: &'static str = "read files below granted pack directories";
    const PREINIT: bool = true;
    type Grant = FilesGrant;
    type Shared = FilesPolicy;
    type Ctx = FilesCtx;

    fn resolve(grant: FilesGrant, setup: &Setup<'_>) -> Result<FilesPolicy, String> {
        match &setup.mode {
            SetupMode::Live {
                pack_files,
                file_store,
                ..
            } => FilesPolicy::resolve(&grant, *pack_files, file_store.clone()),
            // The tape answers `list-dir`; `read` contents come from the
            // audit directory's store, by the recorded digest.
            SetupMode::Replay { file_store, .. } => Ok(FilesPolicy::replay(file_store.clone())),
        }
    }

    fn warnings(grant: &FilesGrant, _: &Setup<'_>) -> Vec<String> {
        if grant.dirs.is_empty() {
            vec![
                "files is granted but its `dirs` list is empty, so every read is denied; \
                 list the pack directories it may read, e.g. files = { dirs = [\"intel/\"] }"
                    .to_owned(),
            ]
        } else {
            Vec::new()
        }
    }

    fn start_call(policy: &Arc<FilesPolicy>, _deadline: Instant) -> FilesCtx {
        FilesCtx::new(policy.clone())
    }

    fn add_to_linker<T: CallView<Self> + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, FilesData>(linker, |t| {
            let (ctx, tape) = t.parts();
            Files { ctx, tape }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::vigil::plugin::files::Host;

    fn pack() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("intel/sub")).unwrap();
        std::fs::write(root.join("intel/iocs.txt"), "evil.example\n").unwrap();
        std::fs::write(root.join("intel/sub/more.txt"), "x").unwrap();
        std::fs::write(root.join("secret.txt"), "outside").unwrap();
        std::fs::write(root.join("pack.toml"), "name = \"p\"").unwrap();
        dir
    }

    fn policy(root: &Path, store: Option<PathBuf>) -> FilesPolicy {
        let grant = FilesGrant {
            dirs: vec!["intel/".into()],
            max_file_bytes: Some(64),
        };
        FilesPolicy::resolve(&grant, PackFiles::Dir(root), store).expect("resolves")
    }

    fn call<R>(policy: FilesPolicy, f: impl FnOnce(&mut Files<'_>) -> R) -> (R, Tape) {
        let mut ctx = FilesCtx::new(Arc::new(policy));
        let mut tape = Tape::default();
        let r = f(&mut Files {
            ctx: &mut ctx,
            tape: &mut tape,
        });
        (r, tape)
    }

    #[test]
    fn a_granted_file_is_read_recorded_with_its_digest_and_kept_for_replay() {
        let dir = pack();
        let store = dir.path().join("store");
        let (r, tape) = call(policy(dir.path(), Some(store.clone())), |f| {
            f.read("intel/iocs.txt".into())
        });
        assert_eq!(r, Ok(b"evil.example\n".to_vec()));
        let (calls, _) = tape.into_calls();
        let digest = hex::encode(Sha256::digest(b"evil.example\n"));
        assert_eq!(
            calls[0].result,
            json!({"ok": {"bytes": 13, "sha256": digest}})
        );
        assert_eq!(
            std::fs::read(store.join(&digest)).unwrap(),
            b"evil.example\n"
        );

        // Replay answers from the store, without the pack.
        let mut replay = Tape::replay(calls, 0);
        let mut ctx = FilesCtx::new(Arc::new(FilesPolicy::replay(store)));
        let mut files = Files {
            ctx: &mut ctx,
            tape: &mut replay,
        };
        assert_eq!(
            files.read("intel/iocs.txt".into()),
            Ok(b"evil.example\n".to_vec())
        );
        assert_eq!(replay.divergence(), None);
    }

    #[test]
    fn escapes_are_denied_and_each_refusal_is_recorded_with_why() {
        let dir = pack();
        let root = dir.path();
        std::os::unix::fs::symlink(root.join("secret.txt"), root.join("intel/abs-link")).unwrap();
        std::os::unix::fs::symlink("../secret.txt", root.join("intel/rel-link")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("intel/etc-link")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", root.join("intel/zero")).unwrap();
        let fifo = root.join("intel/fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        for path in [
            "secret.txt",
            "intel/../secret.txt",
            "/etc/passwd",
            "intel//iocs.txt",
            "./intel/iocs.txt",
            "intel\\iocs.txt",
            "intelx/iocs.txt",
            "intel/abs-link",
            "intel/rel-link",
            "intel/etc-link",
            "intel/zero",
            "intel/fifo",
            "intel",
            "intel/sub",
        ] {
            let (r, tape) = call(policy(root, None), |f| f.read(path.into()));
            assert_eq!(r, Err(wit::Error::AccessDenied), "{path}");
            let (calls, _) = tape.into_calls();
            assert_eq!(calls[0].args, json!({ "path": path }));
            assert!(calls[0].detail.is_some(), "{path}: a refusal says why");
        }
        let (r, _) = call(policy(root, None), |f| f.read("intel/none.txt".into()));
        assert_eq!(r, Err(wit::Error::NotFound));
        std::fs::write(root.join("intel/big.txt"), [b'x'; 65]).unwrap();
        let (r, _) = call(policy(root, None), |f| f.read("intel/big.txt".into()));
        assert_eq!(r, Err(wit::Error::TooLarge));
    }

    #[test]
    fn list_names_files_and_directories_below_a_granted_directory_only() {
        let dir = pack();
        let (r, _) = call(policy(dir.path(), None), |f| f.list_dir("intel".into()));
        assert_eq!(r, Ok(vec!["iocs.txt".to_owned(), "sub/".to_owned()]));
        let (r, _) = call(policy(dir.path(), None), |f| f.list_dir("intel/sub".into()));
        assert_eq!(r, Ok(vec!["more.txt".to_owned()]));
        let (r, _) = call(policy(dir.path(), None), |f| f.list_dir("".into()));
        assert_eq!(r, Err(wit::Error::AccessDenied));
    }

    #[test]
    fn a_grant_naming_a_directory_outside_the_pack_is_refused_at_load() {
        let dir = pack();
        for bad in ["../", "/etc", "missing/", "secret.txt", ""] {
            let grant = FilesGrant {
                dirs: vec![bad.into()],
                max_file_bytes: None,
            };
            let err =
                FilesPolicy::resolve(&grant, PackFiles::Dir(dir.path()), None).expect_err(bad);
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn embedded_packs_serve_the_same_paths() {
        static FILES: &[(&str, &[u8])] = &[("intel/iocs.txt", b"a\n"), ("pack.toml", b"")];
        let grant = FilesGrant {
            dirs: vec!["intel".into()],
            max_file_bytes: None,
        };
        let policy = FilesPolicy::resolve(&grant, PackFiles::Embedded(FILES), None).unwrap();
        let (r, _) = call(policy, |f| {
            (
                f.read("intel/iocs.txt".into()),
                f.read("pack.toml".into()),
                f.list_dir("intel".into()),
            )
        });
        assert_eq!(r.0, Ok(b"a\n".to_vec()));
        assert_eq!(r.1, Err(wit::Error::AccessDenied));
        assert_eq!(r.2, Ok(vec!["iocs.txt".to_owned()]));
    }
}
