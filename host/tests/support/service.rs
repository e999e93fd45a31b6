//! A `vigil serve` for tests and benchmarks: the real binary over a packs
//! directory holding a copy of the starter pack, on loopback ports it
//! picks itself (port 0; the bound addresses are read from its log).
//! Included with `#[path]` by `tests/serve.rs` and `benches/serve.rs`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::Duration;

/// A copy of a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

pub fn starter_dir() -> &'static Path {
    Path::new(vigil::artifacts::STARTER_PACK_DIR)
}

/// A running `vigil serve` over a packs directory holding the starter pack.
pub struct Service {
    pub dir: tempfile::TempDir,
    pub child: Child,
    pub ingest: String,
    pub admin: String,
    /// Every stderr line so far, for failure messages.
    pub log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Service {
    /// Start over a fresh directory; `serve` are more lines of the
    /// `[serve]` table (e.g. `run_pack_tests = false`).
    pub fn start(serve: &str) -> Service {
        Service::spawn(Service::setup(serve))
    }

    /// A directory with the starter pack in `packs/` and a config serving
    /// it: the starter policy, state in `state/`, findings to
    /// `findings.jsonl`.
    pub fn setup(serve: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(starter_dir(), &dir.path().join("packs/starter"));
        let policy =
            std::fs::read_to_string(starter_dir().join("starter-policy.toml")).expect("policy");
        // `state_dir` is a top-level key: before the policy's tables.
        let config = format!(
            "state_dir = \"state\"\n{policy}\n[serve]\npacks_dir = \"packs\"\n{serve}\n\
             [serve.ingest]\nlisten = \"127.0.0.1:0\"\n[serve.admin]\nlisten = \"127.0.0.1:0\"\n\
             [serve.output]\npath = \"findings.jsonl\"\n"
        );
        std::fs::write(dir.path().join("vigil.toml"), config).expect("config");
        dir
    }

    /// `vigil serve` in `dir` (made by [`Service::setup`]).
    pub fn spawn(dir: tempfile::TempDir) -> Service {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["serve", "--config", "vigil.toml"])
            .current_dir(dir.path())
            .env("VIGIL_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("vigil serve starts");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (addrs, found) = mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    for (prefix, what) in [
                        ("ingest: POST http://", "ingest"),
                        ("admin: http://", "admin"),
                    ] {
                        if let Some(rest) = line.split(prefix).nth(1) {
                            let addr = rest.split('/').next().unwrap_or_default().to_owned();
                            let _ = addrs.send((what, addr));
                        }
                    }
                    log.lock().expect("log").push(line);
                }
            });
        }
        let mut ingest = None;
        let mut admin = None;
        while ingest.is_none() || admin.is_none() {
            let (what, addr) = found
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|_| panic!("vigil serve did not start: {:?}", log.lock()));
            match what {
                "ingest" => ingest = Some(addr),
                _ => admin = Some(addr),
            }
        }
        Service {
            dir,
            child,
            ingest: format!("http://{}/ingest", ingest.expect("ingest")),
            admin: format!("http://{}", admin.expect("admin")),
            log,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn status(&self) -> serde_json::Value {
        let body = ureq::get(&format!("{}/status", self.admin))
            .call()
            .expect("status answers")
            .into_string()
            .expect("status body");
        serde_json::from_str(&body).expect("status is JSON")
    }

    /// The last reload of the starter pack's directory: (at, outcome).
    pub fn last_reload(&self) -> Option<(String, String)> {
        let status = self.status();
        let reloads = status["reloads"].as_array()?;
        let last = (reloads.iter()).find(|r| {
            r["dir"]
                .as_str()
                .is_some_and(|d| d.ends_with("packs/starter"))
        })?;
        Some((
            last["at"].as_str()?.to_owned(),
            last["outcome"].as_str()?.to_owned(),
        ))
    }

    pub fn current_version(&self) -> String {
        self.status()["packs"][0]["version"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Events the host has recorded, as its metrics say.
    pub fn events_recorded(&self) -> u64 {
        let text = ureq::get(&format!("{}/metrics", self.admin))
            .call()
            .expect("metrics")
            .into_string()
            .expect("text");
        (text.lines())
            .find_map(|l| l.strip_prefix("vigil_events_total "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> (tempfile::TempDir, Vec<String>) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(killed.success());
        let status = self.child.wait().expect("waits");
        // The stderr reader has the last lines once the pipe closes.
        std::thread::sleep(Duration::from_millis(50));
        let log = self.log.lock().expect("log").clone();
        assert!(
            status.success(),
            "vigil serve exited with {status}: {log:#?}"
        );
        (self.dir, log)
    }
}

/// POST `body`; the accepted line count on 200, else the status code.
pub fn post(url: &str, body: &[u8]) -> Result<u64, u16> {
    match ureq::post(url).send_bytes(body) {
        Ok(response) => {
            let v: serde_json::Value =
                serde_json::from_str(&response.into_string().expect("body")).expect("JSON");
            Ok(v["accepted"].as_u64().expect("accepted"))
        }
        Err(ureq::Error::Status(code, _)) => Err(code),
        // Refused or reset: the host has stopped listening.
        Err(_) => Err(0),
    }
}

/// `vigil audit verify` of the log under `dir`: (passed, what it printed).
pub fn verify(dir: &Path, audit: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["audit", "verify", "--audit", audit])
        .current_dir(dir)
        .output()
        .expect("verify runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
