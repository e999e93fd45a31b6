//! `vigil serve` as an operator runs it: the real binary, real sockets on
//! loopback, a real packs directory changed under it.

#[path = "support/service.rs"]
mod service;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use service::{Service, copy_dir, post, starter_dir, verify};
use vigil::audit::query::{Entry, for_each};
use vigil::audit::record::{BatchRecord, Lifecycle, Record};

/// A client posting the starter events in bodies of `lines` lines, `pause`
/// apart, until `stop`; returns the events acknowledged with 200.
fn load(
    url: &str,
    lines: usize,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    let url = url.to_owned();
    let events = std::fs::read_to_string(starter_dir().join("events.jsonl")).expect("events");
    std::thread::spawn(move || {
        let all: Vec<&str> = events.lines().collect();
        let mut acked = 0;
        'outer: while !stop.load(Ordering::Relaxed) {
            for chunk in all.chunks(lines) {
                if stop.load(Ordering::Relaxed) {
                    break 'outer;
                }
                let body = chunk.join("\n") + "\n";
                match post(&url, body.as_bytes()) {
                    Ok(n) => {
                        acked += n;
                        std::thread::sleep(pause);
                    }
                    Err(429) => std::thread::sleep(Duration::from_millis(50)),
                    Err(_) => break 'outer,
                }
            }
        }
        acked
    })
}

/// Every record of the audit log under `dir`.
fn records(audit: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    for_each(audit, |entry, _| out.push(entry)).expect("log readable");
    out
}

/// The events of the ingest stream in order, as the batch records hold them.
fn ingest_batches(entries: &[Entry]) -> Vec<(u64, &BatchRecord)> {
    (entries.iter())
        .filter_map(|e| match &e.record {
            Record::Batch(b) if b.source == "http-ingest" => Some((e.seq, b)),
            _ => None,
        })
        .collect()
}

#[test]
fn ingest_acknowledges_only_what_the_log_holds_and_sigterm_loses_nothing_acknowledged() {
    let service = Service::start("");
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..3)
        .map(|_| load(&service.ingest, 97, Duration::ZERO, stop.clone()))
        .collect();
    // Let some load through, then stop the host under it.
    let started = Instant::now();
    while service.status()["packs"][0]["generation"].is_null()
        || started.elapsed() < Duration::from_secs(3)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = ureq::get(&format!("{}/metrics", service.admin))
        .call()
        .expect("metrics")
        .into_string()
        .expect("text");
    assert!(metrics.contains("vigil_events_total"), "{metrics}");
    let (dir, log) = service.stop();
    stop.store(true, Ordering::Relaxed);
    let acked: u64 = clients.into_iter().map(|c| c.join().expect("client")).sum();
    assert!(acked > 0, "no event was acknowledged: {log:#?}");

    let entries = records(&dir.path().join("state/audit"));
    let batches = ingest_batches(&entries);
    let recorded: u64 = batches.iter().map(|(_, b)| b.end.line - b.start.line).sum();
    assert!(
        recorded >= acked,
        "{acked} events acknowledged but only {recorded} in the log"
    );
    // Every batch has one invocation per detector of the starter pack.
    let mut per_batch: BTreeMap<u64, usize> = BTreeMap::new();
    for e in &entries {
        if let Record::Invocation(i) = &e.record {
            *per_batch.entry(i.batch).or_default() += 1;
        }
    }
    for (seq, _) in &batches {
        assert_eq!(per_batch.get(seq), Some(&3), "batch record #{seq}");
    }
    let stopped = entries.iter().rev().find_map(|e| match &e.record {
        Record::Lifecycle(Lifecycle::HostStop { reason }) => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(stopped.as_deref(), Some("serve stopped: SIGTERM"));
    let (verified, text) = verify(dir.path(), "state/audit");
    assert!(verified, "{text}");
}

/// One way to replace the starter pack in the packs directory.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Replacement {
    /// A new version, written in place the way editors save (temp file
    /// renamed over `pack.toml`).
    NewVersion,
    /// A new version as a whole new directory renamed over the old one.
    DirectorySwap,
    /// A component that is not Wasm.
    CorruptWasm,
    /// A typo in `pack.toml`.
    BrokenManifest,
    /// A test case expecting a finding the pack does not produce.
    FailingTest,
    /// `pack.toml` present, a component not copied yet.
    HalfCopied,
}

impl Replacement {
    fn is_good(self) -> bool {
        matches!(self, Replacement::NewVersion | Replacement::DirectorySwap)
    }
}

/// Write `text` to `path` through a temp file renamed over it.
fn save(path: &Path, text: &[u8]) {
    let tmp = path.with_extension("swp");
    std::fs::write(&tmp, text).expect("write temp");
    std::fs::rename(&tmp, path).expect("rename over");
}

/// Put a good copy of the starter pack, version `version`, at `dir`.
fn good_pack(dir: &Path, version: u32) {
    copy_dir(starter_dir(), dir);
    let manifest = std::fs::read_to_string(starter_dir().join("pack.toml")).expect("manifest");
    let manifest = manifest.replacen(
        "version = \"0.1.0\"",
        &format!("version = \"0.{version}.0\""),
        1,
    );
    assert!(
        manifest.contains(&format!("0.{version}.0")),
        "the starter pack is version 0.1.0"
    );
    save(&dir.join("pack.toml"), manifest.as_bytes());
}

fn apply(packs: &Path, replacement: Replacement, version: u32) {
    let pack = packs.join("starter");
    match replacement {
        // Only ever after a good one: the one file that changes.
        Replacement::NewVersion => {
            let manifest = std::fs::read_to_string(pack.join("pack.toml")).expect("manifest");
            let at = manifest.find("version = \"").expect("a version") + 11;
            let end = at + manifest[at..].find('"').expect("quoted");
            let manifest = format!("{}0.{version}.0{}", &manifest[..at], &manifest[end..]);
            save(&pack.join("pack.toml"), manifest.as_bytes());
        }
        Replacement::DirectorySwap => {
            // Staged under a hidden name (ignored by the watcher), then
            // renamed in. The old copy is kept: a watch on a directory
            // follows its inode, and deleting it could name the old path.
            let staging = packs.join(format!(".starter.new.{version}"));
            good_pack(&staging, version);
            std::fs::rename(&pack, packs.join(format!(".starter.old.{version}")))
                .expect("move old aside");
            std::fs::rename(&staging, &pack).expect("swap in");
        }
        Replacement::CorruptWasm => save(&pack.join("brute_force.wasm"), b"\0asm garbage"),
        Replacement::BrokenManifest => {
            let manifest = std::fs::read_to_string(pack.join("pack.toml")).expect("manifest");
            save(
                &pack.join("pack.toml"),
                manifest.replacen("name =", "nmae =", 1).as_bytes(),
            );
        }
        Replacement::FailingTest => {
            save(
                &pack.join("cases/brute-force/expected.json"),
                br#"[{"plugin": "brute-force", "rule_id": "vigil.never", "event": 1}]"#,
            );
        }
        Replacement::HalfCopied => {
            std::fs::remove_file(pack.join("ioc_match.wasm")).expect("remove a component");
        }
    }
}

#[test]
fn a_reload_storm_under_load_never_activates_a_bad_generation_and_loses_no_event() {
    let service = Service::start("");
    let packs = service.path("packs");
    let stop = Arc::new(AtomicBool::new(false));
    // A steady stream (about 600 events/s) rather than a flood: the point
    // is events in flight at every reload, and the stream is run again
    // without reloads at the end.
    let clients = vec![load(
        &service.ingest,
        61,
        Duration::from_millis(100),
        stop.clone(),
    )];
    use Replacement::*;
    let bad = [CorruptWasm, BrokenManifest, FailingTest, HalfCopied];
    // 50 replacements: each bad one is repaired by a whole new directory
    // swapped in, then a version bump saved in place.
    let plan: Vec<Replacement> = (0..17)
        .flat_map(|i| [bad[i % bad.len()], DirectorySwap, NewVersion])
        .take(50)
        .collect();
    let bad_count = plan.iter().filter(|r| !r.is_good()).count();
    let mut version = 1;
    let mut good_versions = BTreeSet::from(["0.1.0".to_owned()]);
    for replacement in plan {
        if replacement.is_good() {
            version += 1;
            good_versions.insert(format!("0.{version}.0"));
        }
        let before = service.current_version();
        let before_reload = service.last_reload();
        apply(&packs, replacement, version);
        // Wait for the watcher to reload it: a good one becomes current; a
        // bad one is refused (a burst of events may be seen as two
        // reloads; each must hold).
        let waited = Instant::now();
        loop {
            let done = if replacement.is_good() {
                service.current_version() == format!("0.{version}.0")
            } else {
                let now = service.last_reload();
                now != before_reload && now.is_some_and(|(_, outcome)| outcome == "refused")
            };
            if done {
                break;
            }
            assert!(
                waited.elapsed() < Duration::from_secs(60),
                "no reload after {replacement:?}: {:#?}",
                service.status()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        if !replacement.is_good() {
            assert_eq!(
                service.current_version(),
                before,
                "{replacement:?} kept the last good"
            );
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let (dir, log) = service.stop();
    stop.store(true, Ordering::Relaxed);
    let acked: u64 = clients.into_iter().map(|c| c.join().expect("client")).sum();
    assert!(acked > 0, "{log:#?}");

    let entries = records(&dir.path().join("state/audit"));
    // Generations that became current, and the versions they carry.
    let mut active: BTreeMap<u64, String> = BTreeMap::new();
    let mut refused = 0;
    for e in &entries {
        match &e.record {
            Record::Lifecycle(Lifecycle::GenerationChange { to: Some(to), .. }) => {
                active.insert(to.generation, to.version.clone());
            }
            Record::Lifecycle(Lifecycle::ReloadRefused { .. }) => refused += 1,
            _ => {}
        }
    }
    assert!(
        refused >= bad_count,
        "every bad replacement is recorded as refused ({refused} of {bad_count})"
    );
    let versions: BTreeSet<String> = active.values().cloned().collect();
    assert_eq!(
        versions, good_versions,
        "every good version became current, and nothing else did"
    );
    // Every recorded batch: one invocation per detector, all on one
    // generation that was made current, and never a refused one.
    let batches = ingest_batches(&entries);
    let mut calls: BTreeMap<u64, Vec<(String, u64)>> = BTreeMap::new();
    for e in &entries {
        if let Record::Invocation(i) = &e.record {
            calls
                .entry(i.batch)
                .or_default()
                .push((i.plugin.clone(), i.generation));
        }
    }
    for (seq, _) in &batches {
        let batch_calls = calls.get(seq).cloned().unwrap_or_default();
        let plugins: BTreeSet<&str> = batch_calls.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(batch_calls.len(), 3, "batch #{seq}: {batch_calls:?}");
        assert_eq!(plugins.len(), 3, "batch #{seq}: {batch_calls:?}");
        let generations: BTreeSet<u64> = batch_calls.iter().map(|(_, g)| *g).collect();
        assert_eq!(generations.len(), 1, "batch #{seq} ran on one generation");
        let generation = generations.into_iter().next().expect("one");
        assert!(
            active.contains_key(&generation),
            "batch #{seq} ran on generation {generation}"
        );
    }
    let recorded: u64 = batches.iter().map(|(_, b)| b.end.line - b.start.line).sum();
    assert!(
        recorded >= acked,
        "{acked} acknowledged, {recorded} recorded"
    );

    // Findings equal a run without reloads over the same events: the
    // stream rebuilt from the log, run once by `vigil run` on the pack.
    let mut stream = String::new();
    for (_, b) in &batches {
        for event in &b.events {
            let event = event.event.as_ref().expect("inputs recorded in full");
            stream.push_str(&serde_json::to_string(event).expect("event"));
            stream.push('\n');
        }
    }
    std::fs::write(dir.path().join("stream.jsonl"), &stream).expect("stream");
    let run = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "run",
            "--pack",
            "packs/starter",
            "--policy",
            "vigil.toml",
            "--state-dir",
            "rerun",
            "--input",
            "stream.jsonl",
        ])
        .current_dir(dir.path())
        .env("VIGIL_LOG", "warn")
        .output()
        .expect("vigil run");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let key = |line: &str| {
        let f: serde_json::Value = serde_json::from_str(line).expect("finding");
        (
            f["plugin"].as_str().unwrap_or_default().to_owned(),
            f["rule_id"].as_str().unwrap_or_default().to_owned(),
            f["event"]["line"].as_u64().unwrap_or_default(),
        )
    };
    let mut served: Vec<_> = std::fs::read_to_string(dir.path().join("findings.jsonl"))
        .expect("findings")
        .lines()
        .map(key)
        .collect();
    let mut rerun: Vec<_> = String::from_utf8_lossy(&run.stdout)
        .lines()
        .map(key)
        .collect();
    served.sort();
    rerun.sort();
    assert!(!served.is_empty());
    assert_eq!(
        served, rerun,
        "findings of the served run vs one run without reloads"
    );
}

#[test]
fn the_admin_api_refuses_a_public_bind_without_a_token_and_requests_without_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("packs")).expect("packs");
    let config = "[serve]\npacks_dir = \"packs\"\n[serve.admin]\nlisten = \"0.0.0.0:0\"\n";
    std::fs::write(dir.path().join("vigil.toml"), config).expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["serve", "--config", "vigil.toml"])
        .current_dir(dir.path())
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[serve.admin] listen = \"0.0.0.0:0\" is not a loopback address"),
        "{stderr}"
    );

    // With a token, every request needs it.
    std::fs::write(dir.path().join("token"), "s3cret-token\n").expect("token");
    let config = "[serve]\npacks_dir = \"packs\"\n[serve.admin]\nlisten = \"127.0.0.1:0\"\n\
                  token_file = \"token\"\n";
    std::fs::write(dir.path().join("vigil.toml"), config).expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["serve", "--config", "vigil.toml"])
        .current_dir(dir.path())
        .env("VIGIL_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut admin = None;
    for line in stderr.by_ref().map_while(Result::ok) {
        if let Some(rest) = line.split("admin: http://").nth(1) {
            admin = rest.split('/').next().map(str::to_owned);
            break;
        }
    }
    // Keep reading: the host logs to it while it runs.
    std::thread::spawn(move || stderr.for_each(drop));
    let admin = admin.expect("admin address logged");
    let url = format!("http://{admin}/status");
    match ureq::get(&url).call() {
        Err(ureq::Error::Status(401, _)) => {}
        other => panic!("without a token: {other:?}"),
    }
    match ureq::get(&url).set("authorization", "Bearer wrong").call() {
        Err(ureq::Error::Status(401, _)) => {}
        other => panic!("with a wrong token: {other:?}"),
    }
    let ok = ureq::get(&url)
        .set("authorization", "Bearer s3cret-token")
        .call()
        .expect("with the token");
    assert_eq!(ok.status(), 200);
    // `vigil status` reads the same [serve.admin] (here with the address
    // the host bound) and sends the token.
    let status_config = |token: &str| {
        std::fs::write(dir.path().join("status-token"), token).expect("token");
        let config = format!(
            "[serve]\npacks_dir = \"packs\"\n[serve.admin]\nlisten = \"{admin}\"\n\
             token_file = \"status-token\"\n"
        );
        std::fs::write(dir.path().join("status.toml"), config).expect("config");
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["status", "--config", "status.toml"])
            .current_dir(dir.path())
            .output()
            .expect("vigil status runs")
    };
    let shown = status_config("s3cret-token");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    assert!(text.starts_with("vigil 0.1.0 up since "), "{text}");
    let refused = status_config("wrong");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("401"), "{stderr}");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().expect("exits").success());
}

#[test]
fn kill_9_under_load_loses_nothing_acknowledged_and_the_restarted_host_goes_on() {
    let mut service = Service::start("");
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|_| load(&service.ingest, 97, Duration::ZERO, stop.clone()))
        .collect();
    let started = Instant::now();
    while service.events_recorded() < 3000 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no events recorded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    service.child.kill().expect("SIGKILL");
    service.child.wait().expect("dies");
    stop.store(true, Ordering::Relaxed);
    let acked: u64 = clients.into_iter().map(|c| c.join().expect("client")).sum();
    assert!(acked > 0);
    let audit = service.path("state/audit");
    let entries = records(&audit);
    let recorded: u64 = (ingest_batches(&entries).iter())
        .map(|(_, b)| b.end.line - b.start.line)
        .sum();
    assert!(
        recorded >= acked,
        "{acked} events acknowledged, {recorded} in the log after kill -9"
    );

    // The same state dir and log: the host starts, takes events, stops.
    let service = Service::spawn(service.dir);
    let events = std::fs::read(starter_dir().join("events.jsonl")).expect("events");
    assert_eq!(post(&service.ingest, &events), Ok(1070));
    let (dir, _) = service.stop();
    let (verified, text) = verify(dir.path(), "state/audit");
    assert!(verified, "{text}");
}

#[test]
fn a_revocation_under_load_denies_the_next_calls_and_says_how_fast() {
    let service = Service::start("");
    let stop = Arc::new(AtomicBool::new(false));
    let client = load(&service.ingest, 61, Duration::from_millis(20), stop.clone());
    while service.events_recorded() < 500 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let asked = Instant::now();
    let answer = ureq::post(&format!("{}/revoke", service.admin))
        .send_string(
            r#"{"plugin": "starter/brute-force", "capability": "state", "reason": "test"}"#,
        )
        .expect("revoke answers");
    assert_eq!(answer.status(), 200);
    // In force once the status lists it.
    loop {
        let status = service.status();
        let plugins = status["packs"][0]["plugins"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let revoked = plugins.iter().any(|p| {
            p["id"] == "brute-force" && !p["revoked"].as_array().is_none_or(Vec::is_empty)
        });
        if revoked {
            break;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "not in force after 5 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let in_force = asked.elapsed();
    let recorded_then = service.events_recorded();
    while service.events_recorded() < recorded_then + 1000 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (dir, _) = service.stop();
    stop.store(true, Ordering::Relaxed);
    client.join().expect("client");

    let entries = records(&dir.path().join("state/audit"));
    let change = (entries.iter())
        .find(|e| matches!(&e.record, Record::Lifecycle(Lifecycle::GrantChange { by, .. }) if by == "admin API"))
        .map(|e| e.seq)
        .expect("the revocation is recorded, by the admin API");
    // Brute-force's state calls after the record: at most the batches that
    // were in flight still ran with the grant, every later one is denied.
    let state_calls: Vec<(u64, bool)> = (entries.iter())
        .filter(|e| e.seq > change)
        .filter_map(|e| match &e.record {
            Record::Invocation(i) if i.plugin == "brute-force" => Some((e.seq, i)),
            _ => None,
        })
        .flat_map(|(seq, i)| {
            (i.host_calls.iter())
                .filter(|c| c.interface == "state")
                .map(move |c| (seq, c.status == vigil::audit::record::CallStatus::Denied))
        })
        .collect();
    let first_denied = state_calls
        .iter()
        .position(|(_, denied)| *denied)
        .expect("a denied call");
    assert!(
        state_calls[first_denied..]
            .iter()
            .all(|(_, denied)| *denied),
        "a state call was allowed after one was denied"
    );
    let allowed_invocations: BTreeSet<u64> = state_calls[..first_denied]
        .iter()
        .map(|(seq, _)| *seq)
        .collect();
    assert!(
        allowed_invocations.len() <= 3,
        "{} invocations after the record still used the grant",
        allowed_invocations.len()
    );
    println!(
        "revocation through POST /revoke in force (status) after {:.1} ms; \
         {} brute-force calls recorded after it still had the grant (in flight)",
        in_force.as_secs_f64() * 1e3,
        allowed_invocations.len()
    );
}

/// A loopback webhook endpoint: answers `500` to the first `fail_first`
/// requests (or to all with `u64::MAX`), then `200`; counts the finding
/// lines of the requests it took.
fn webhook_endpoint(fail_first: u64) -> (String, Arc<std::sync::atomic::AtomicU64>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let taken = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = taken.clone();
    std::thread::spawn(move || {
        let mut requests = 0u64;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            requests += 1;
            let status = if requests <= fail_first {
                "500 Internal Server Error"
            } else {
                let lines = body.iter().filter(|b| **b == b'\n').count() as u64;
                counted.fetch_add(lines, Ordering::Relaxed);
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (url, taken)
}

#[test]
fn the_webhook_retries_until_taken_and_records_what_it_could_not_deliver() {
    let events = std::fs::read(starter_dir().join("events.jsonl")).expect("events");
    // A flaky endpoint: the first three requests fail; every finding
    // arrives (at least once) after retries.
    let (url, taken) = webhook_endpoint(3);
    let service = Service::start(&format!("\n[serve.webhook]\nurl = \"{url}\"\nbatch = 10\n"));
    assert_eq!(post(&service.ingest, &events), Ok(1070));
    let waited = Instant::now();
    while taken.load(Ordering::Relaxed) < 35 {
        assert!(waited.elapsed() < Duration::from_secs(60), "not delivered");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (dir, _) = service.stop();
    let overflows = (records(&dir.path().join("state/audit")).into_iter())
        .filter(|e| matches!(e.record, Record::Lifecycle(Lifecycle::SinkOverflow { .. })))
        .count();
    assert_eq!(overflows, 0, "everything was delivered");

    // An endpoint that never takes anything and a queue of 5: every
    // finding is counted and recorded as not delivered, none silently.
    let (url, taken) = webhook_endpoint(u64::MAX);
    let service = Service::start(&format!(
        "\n[serve.webhook]\nurl = \"{url}\"\nmax_queue = 5\ndrain_ms = 300\n"
    ));
    assert_eq!(post(&service.ingest, &events), Ok(1070));
    let (dir, _) = service.stop();
    assert_eq!(taken.load(Ordering::Relaxed), 0);
    let entries = records(&dir.path().join("state/audit"));
    let dropped: u64 = (entries.iter())
        .filter_map(|e| match &e.record {
            Record::Lifecycle(Lifecycle::SinkOverflow { dropped, sink, .. }) => {
                assert_eq!(sink, &url);
                Some(*dropped)
            }
            _ => None,
        })
        .sum();
    assert_eq!(dropped, 35, "35 findings, none delivered, each recorded");
    let findings = std::fs::read_to_string(dir.path().join("findings.jsonl")).expect("file");
    assert_eq!(
        findings.lines().count(),
        35,
        "the file sink still has them all"
    );
}
