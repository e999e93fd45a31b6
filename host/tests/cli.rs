//! The `vigil` binary as a user runs it.

use std::path::Path;
use std::process::{Command, Output};

fn vigil(args: &[&str], cwd: &Path) -> Output {
    vigil_as("tester", args, cwd)
}

/// `vigil` run by the OS user `user` (as `$USER` says).
fn vigil_as(user: &str, args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .current_dir(cwd)
        .env("VIGIL_LOG", "warn")
        .env("USER", user)
        .output()
        .expect("running vigil")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A copy of the assembled starter pack and its policy in a temp dir.
fn starter_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(
        Path::new(vigil::artifacts::STARTER_PACK_DIR),
        &dir.path().join("pack"),
    );
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read pack dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[test]
fn run_with_no_arguments_uses_the_embedded_starter_pack_and_sample_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = vigil(&["run"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let findings: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each stdout line is a JSON finding"))
        .collect();
    let truth: Vec<serde_json::Value> = serde_json::from_slice(
        &std::fs::read(Path::new(vigil::artifacts::STARTER_PACK_DIR).join("events.truth.json"))
            .expect("truth"),
    )
    .expect("truth is JSON");
    let key = |plugin: &serde_json::Value, rule: &serde_json::Value, line: &serde_json::Value| {
        (plugin.to_string(), rule.to_string(), line.as_u64())
    };
    let mut got: Vec<_> = findings
        .iter()
        .map(|f| key(&f["plugin"], &f["rule_id"], &f["event"]["line"]))
        .collect();
    let mut want: Vec<_> = truth
        .iter()
        .map(|t| key(&t["plugin"], &t["rule_id"], &t["line"]))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(
        got, want,
        "the starter pack finds exactly the planted attacks"
    );
    let stderr = text(&out.stderr);
    let summary = stderr.lines().last().expect("a summary line");
    assert!(
        summary.contains("events read") && summary.contains("findings") && summary.contains(" s"),
        "{summary}"
    );
}

#[test]
fn malformed_event_lines_are_reported_with_their_number_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, "{\"a\":1}\n{\"broken\": \n[1,2,3]\n{\"b\":2}\n").expect("write");
    let out = vigil(&["run", "--input", "events.jsonl"], dir.path());
    assert!(
        out.status.success(),
        "a malformed line does not stop the run"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("events.jsonl:2: skipped malformed event"),
        "{stderr}"
    );
    assert!(
        stderr.contains("events.jsonl:3: skipped malformed event: an event must be a JSON object"),
        "{stderr}"
    );
    assert!(stderr.contains("2 events read"), "{stderr}");
    assert!(stderr.contains("2 malformed lines"), "{stderr}");
}

#[test]
fn check_lists_every_plugin_with_imports_and_grants() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = vigil(&["check"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("pack starter 0.1.0: ok"), "{stdout}");
    let brute = stdout
        .lines()
        .find(|l| l.contains("brute-force"))
        .expect("brute-force line");
    assert!(
        brute.contains("imports: log, state") && brute.contains("granted: log, state"),
        "{brute}"
    );
}

#[test]
fn check_refuses_a_pack_whose_policy_does_not_grant_what_it_imports() {
    let dir = starter_copy();
    std::fs::write(
        dir.path().join("deny.toml"),
        "[packs.starter.plugins.brute-force]\ncapabilities = [\"log\"]\n",
    )
    .expect("write");
    let out = vigil(&["check", "pack", "--policy", "deny.toml"], dir.path());
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("pack `starter`, plugin `brute-force`: imports `vigil:plugin/state@0.1.0`"),
        "{stderr}"
    );
}

#[test]
fn a_typo_in_pack_toml_is_reported_with_file_and_line() {
    let dir = starter_copy();
    let manifest = dir.path().join("pack/pack.toml");
    let text_before = std::fs::read_to_string(&manifest).expect("read");
    std::fs::write(
        &manifest,
        text_before.replacen("world = \"detector\"", "wrld = \"detector\"", 1),
    )
    .expect("write");
    let out = vigil(
        &["check", "pack", "--policy", "pack/starter-policy.toml"],
        dir.path(),
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("pack.toml") && stderr.contains("wrld") && stderr.contains("line"),
        "{stderr}"
    );
}

#[test]
fn test_command_passes_on_the_starter_pack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = vigil(&["test"], dir.path());
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("3 passed, 0 failed"));
}

#[test]
fn test_command_fails_with_a_diff_when_an_expected_finding_is_missing() {
    let dir = starter_copy();
    let expected = dir.path().join("pack/cases/ioc-match/expected.json");
    let mut cases: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&expected).expect("read")).expect("json");
    cases.push(serde_json::json!({"plugin": "ioc-match", "rule_id": "vigil.ioc.hash", "event": 1}));
    std::fs::write(&expected, serde_json::to_vec(&cases).expect("json")).expect("write");
    let out = vigil(
        &["test", "pack", "--policy", "pack/starter-policy.toml"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("FAIL ioc-match"), "{stdout}");
    assert!(
        stdout.contains("- missing:    ioc-match vigil.ioc.hash at event line 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok   brute-force"),
        "other cases still run: {stdout}"
    );
}

#[test]
fn inspect_prints_the_world_and_capability_imports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = vigil::artifacts::component_path("brute-force").expect("built");
    let out = vigil(&["inspect", wasm], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("world: detector"), "{stdout}");
    assert!(
        stdout.contains("vigil:plugin/state@0.1.0") && stdout.contains("vigil:plugin/log@0.1.0"),
        "{stdout}"
    );
}

#[test]
fn inspect_of_a_non_component_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("x.wasm"), b"not wasm").expect("write");
    let out = vigil(&["inspect", "x.wasm"], dir.path());
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("x.wasm: not a valid Wasm component"),
        "{}",
        text(&out.stderr)
    );
}

/// SIGKILL `child` once the audit `segment` holds more than `bytes`;
/// `false` if it exited before that.
fn kill_once_log_passes(child: &mut std::process::Child, segment: &Path, bytes: u64) -> bool {
    loop {
        if child.try_wait().expect("poll").is_some() {
            return false;
        }
        if std::fs::metadata(segment).is_ok_and(|m| m.len() > bytes) {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
            return true;
        }
        std::thread::yield_now();
    }
}

#[test]
fn kill_9_mid_run_then_restart_leaves_a_verifying_log_with_one_invocation_per_event() {
    use std::collections::HashMap;
    use vigil::audit::query;
    use vigil::audit::record::Record;

    const EVENTS: u64 = 100_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("events.jsonl");
    let lines: String = (1..=EVENTS)
        .map(|i| {
            format!("{{\"n\":{i},\"Event\":{{\"EventData\":{{\"Image\":\"C:/x{i}.exe\"}}}}}}\n")
        })
        .collect();
    std::fs::write(&input, lines).expect("write events");
    let audit = dir.path().join(".vigil/audit");
    let segment = audit.join("00000001.jsonl");
    let args = [
        "run",
        "--input",
        "events.jsonl",
        "--output",
        "findings.jsonl",
    ];

    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .current_dir(dir.path())
        .env("VIGIL_LOG", "error")
        .spawn()
        .expect("start vigil");
    // Kill once a few batch units are on disk (the whole log is several
    // times larger), then restart.
    assert!(
        kill_once_log_passes(&mut child, &segment, 3 << 20),
        "the run ended before it could be killed"
    );
    let out = vigil(&args, dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("resuming an interrupted run"),
        "{}",
        text(&out.stderr)
    );

    let verified = vigil(&["audit", "verify"], dir.path());
    assert!(verified.status.success(), "{}", text(&verified.stdout));

    let mut batches: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    query::for_each(&audit, |entry, _| match entry.record {
        Record::Batch(b) => {
            batches.insert(entry.seq, b.events.iter().map(|e| e.id).collect());
        }
        Record::Invocation(inv) => seen
            .entry(inv.plugin)
            .or_default()
            .extend(batches.get(&inv.batch).expect("batch before invocation")),
        _ => {}
    })
    .expect("read the log");
    assert_eq!(seen.len(), 3, "every starter plugin ran");
    for (plugin, mut ids) in seen {
        ids.sort_unstable();
        assert_eq!(
            ids.len() as u64,
            EVENTS,
            "{plugin}: one invocation per event"
        );
        ids.dedup();
        assert_eq!(ids.len() as u64, EVENTS, "{plugin}: no event twice");
    }
}

/// `(action, capability, by, reason, requested_at)` of every grant-change
/// record in `audit`.
fn grant_changes(audit: &Path) -> Vec<(String, String, String, String, String)> {
    use vigil::audit::record::{Lifecycle, Record};
    let mut out = Vec::new();
    if !audit.exists() {
        return out;
    }
    vigil::audit::query::for_each(audit, |entry, _| {
        if let Record::Lifecycle(Lifecycle::GrantChange {
            action,
            capability,
            by,
            reason,
            requested_at,
            ..
        }) = entry.record
        {
            out.push((
                action.to_string(),
                capability.map(|c| c.to_string()).unwrap_or_default(),
                by,
                reason,
                requested_at.to_string(),
            ));
        }
    })
    .expect("log reads");
    out
}

#[test]
fn revoke_and_restore_edit_the_revocation_list_and_refuse_mistakes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let audit = state.join("audit");
    let state_arg = state.to_str().expect("utf-8 path");
    let out = vigil_as(
        "alice",
        &[
            "revoke",
            "ai-enrich",
            "--capability",
            "http",
            "--reason",
            "vendor incident",
            "--state-dir",
            state_arg,
        ],
        dir.path(),
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("revoked http of ai-enrich"), "{stderr}");
    assert!(stderr.contains("recorded as grant change"), "{stderr}");
    let list = vigil::revocation::RevocationList::load(&state.join(vigil::revocation::FILE))
        .expect("list");
    assert_eq!(list.revoked.len(), 1);
    assert_eq!(list.revoked[0].reason, "vendor incident");
    assert!(list.pending.is_empty(), "recorded, so not pending");

    let out = vigil(
        &[
            "revoke",
            "ai-enrich",
            "--capability",
            "htp",
            "--reason",
            "x",
            "--state-dir",
            state_arg,
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("`htp` is not a capability"),
        "{}",
        text(&out.stderr)
    );

    let restore = |plugin: &str| {
        vigil_as(
            "bob",
            &[
                "restore",
                plugin,
                "--reason",
                "fixed",
                "--state-dir",
                state_arg,
            ],
            dir.path(),
        )
    };
    let out = restore("other");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("nothing to restore"),
        "{}",
        text(&out.stderr)
    );
    let out = restore("ai-enrich");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = vigil::revocation::RevocationList::load(&state.join(vigil::revocation::FILE))
        .expect("list");
    assert!(list.revoked.is_empty());

    // No host ran: each command wrote its own record, the refused ones none.
    let records = grant_changes(&audit);
    assert_eq!(records.len(), 2, "{records:?}");
    let (revoke, restore) = (&records[0], &records[1]);
    assert_eq!(
        (&*revoke.0, &*revoke.1, &*revoke.2, &*revoke.3),
        ("revoke", "http", "alice", "vendor incident")
    );
    assert_eq!(
        (&*restore.0, &*restore.1, &*restore.2, &*restore.3),
        ("restore", "", "bob", "fixed")
    );
    let time = |t: &str| humantime::parse_rfc3339(t).expect("RFC 3339");
    assert!(time(&restore.4) >= time(&revoke.4));
    let show = vigil(&["audit", "show", "--state-dir", state_arg], dir.path());
    let shown = text(&show.stdout);
    assert!(
        shown.contains("GRANT REVOKE http of ai-enrich by alice"),
        "{shown}"
    );
    assert!(
        shown.contains("GRANT RESTORE every capability of ai-enrich by bob"),
        "{shown}"
    );

    // A host started later does not record them again.
    let run = vigil(&["run", "--state-dir", state_arg], dir.path());
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(grant_changes(&audit).len(), 2);
    let verify = vigil(&["audit", "verify", "--state-dir", state_arg], dir.path());
    assert!(verify.status.success(), "{}", text(&verify.stdout));
}

/// What the hostile test plugin imports.
const CAPS: &str = r#""log", "config", "state", "clock""#;

/// A pack of one hostile plugin in `mode`, its policy granting what it imports, and
/// two events, in a temp dir: `pack/`, `policy.toml`, `events.jsonl`.
fn hostile_pack(mode: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let pack = dir.path().join("pack");
    std::fs::create_dir_all(&pack).expect("mkdir");
    let component = vigil_test_artifacts::component_path("hostile").expect("hostile built");
    std::fs::copy(component, pack.join("hostile.wasm")).expect("copy component");
    std::fs::write(
        pack.join("pack.toml"),
        format!(
            "name = \"t\"\nversion = \"1.0.0\"\n[[plugins]]\nid = \"h\"\ncomponent = \"hostile.wasm\"\nworld = \"detector\"\n\
             capabilities = [{CAPS}]\nconfig = {{ mode = \"{mode}\" }}\n"
        ),
    )
    .expect("pack.toml");
    std::fs::write(
        dir.path().join("policy.toml"),
        format!("[packs.t.plugins.h]\ncapabilities = [{CAPS}]\n"),
    )
    .expect("policy");
    std::fs::write(dir.path().join("events.jsonl"), "{\"a\":1}\n{\"a\":2}\n").expect("events");
    dir
}

/// Lines a plugin could have forged: anything that starts like the host's
/// own summary, and any raw control or bidi character.
fn forged_lines(output: &str) -> Vec<&str> {
    output
        .lines()
        .filter(|l| {
            l.starts_with("vigil: 1070")
                || l.starts_with("#99")
                || l.chars().any(|c| {
                    (c.is_control() && c != '\t') || ('\u{202a}'..='\u{202e}').contains(&c)
                })
        })
        .collect()
}

#[test]
fn plugin_text_reaches_stderr_and_audit_show_escaped_never_as_a_line_of_its_own() {
    let dir = hostile_pack("forge");
    let run = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["run", "--pack", "pack", "--policy", "policy.toml"])
        .args(["--input", "events.jsonl", "--state-dir", "state"])
        .current_dir(dir.path())
        .env("VIGIL_LOG", "info")
        .output()
        .expect("running vigil");
    let stderr = text(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(forged_lines(&stderr).is_empty(), "{stderr}");
    assert!(
        stderr.contains(r"done\nvigil: 1070 events read"),
        "the forged text is there, escaped: {stderr}"
    );
    assert!(stderr.contains("vigil: 2 events read"), "{stderr}");

    let show = vigil(&["audit", "show", "--state-dir", "state"], dir.path());
    let shown = text(&show.stdout);
    assert!(show.status.success(), "{}", text(&show.stderr));
    assert!(forged_lines(&shown).is_empty(), "{shown}");
    assert!(shown.contains(r"\u{1b}[31mFAKE\u{202e}"), "{shown}");
}

#[test]
fn check_succeeds_while_a_run_holds_the_state_stores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut run = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["run", "--input", "-"])
        .current_dir(dir.path())
        .env("VIGIL_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start vigil run");
    // The run opened brute-force's store once its file exists.
    let store = dir.path().join(".vigil/starter/brute-force.state.redb");
    let started = std::time::Instant::now();
    while !store.exists() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the run never opened its state"
        );
        std::thread::yield_now();
    }
    let check = vigil(&["check"], dir.path());
    drop(run.stdin.take());
    assert!(run.wait().expect("run ends").success());
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(text(&check.stdout).contains("pack starter 0.1.0: ok"));
}

#[test]
fn findings_from_a_live_stdin_leave_before_the_batch_is_full_or_the_input_ends() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let truth: Vec<serde_json::Value> = serde_json::from_slice(
        &std::fs::read(Path::new(vigil::artifacts::STARTER_PACK_DIR).join("events.truth.json"))
            .expect("truth"),
    )
    .expect("truth is JSON");
    let mut lines: Vec<u64> = (truth.iter())
        .map(|t| t["line"].as_u64().expect("line"))
        .collect();
    lines.sort();
    // Events up to the second finding: far fewer than a batch (256).
    let upto = lines[1];
    assert!(upto < 256, "the test needs findings early in the sample");
    let events =
        std::fs::read_to_string(Path::new(vigil::artifacts::STARTER_PACK_DIR).join("events.jsonl"))
            .expect("events");
    let head: String = events
        .lines()
        .take(upto as usize)
        .map(|l| format!("{l}\n"))
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["run", "--input", "-"])
        .current_dir(dir.path())
        .env("VIGIL_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running vigil");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(head.as_bytes()).expect("write events");
    stdin.flush().expect("flush");
    // Standard input stays open: the producer is live. Read findings on a
    // thread so a hang fails the test instead of blocking it.
    let stdout = child.stdout.take().expect("stdout");
    let (found, findings) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let finding: serde_json::Value = serde_json::from_str(&line).expect("JSON finding");
            if found.send(finding["event"]["line"].as_u64()).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match findings.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(line) => seen.push(line.expect("event line")),
            Err(e) => {
                let _ = child.kill();
                panic!(
                    "findings {seen:?} while stdin is open, then {e:?}: the batch waited for more"
                );
            }
        }
    }
    seen.sort();
    assert_eq!(seen, lines[..2]);
    drop(stdin);
    let out = child.wait_with_output().expect("vigil exits");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("vigil: {upto} events read, 2 findings")),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn two_packs_run_on_the_same_events_and_a_repeated_name_is_refused() {
    let dir = starter_copy();
    // A second pack: the starter pack under another name.
    copy_dir(&dir.path().join("pack"), &dir.path().join("second"));
    let manifest = dir.path().join("second/pack.toml");
    let text_of = std::fs::read_to_string(&manifest).expect("pack.toml");
    let renamed = text_of.replacen("name = \"starter\"", "name = \"second\"", 1);
    assert_ne!(renamed, text_of, "the starter pack is named `starter`");
    std::fs::write(&manifest, renamed).expect("rename");
    let policy = std::fs::read_to_string(
        Path::new(vigil::artifacts::STARTER_PACK_DIR).join("starter-policy.toml"),
    )
    .expect("policy");
    // The policy grants by pack name: grant the second pack the same.
    let grants = &policy[policy.find("[packs.starter").expect("starter grants")..];
    let second_policy = grants.replace("[packs.starter", "[packs.second");
    std::fs::write(
        dir.path().join("vigil.toml"),
        format!("{policy}\n{second_policy}"),
    )
    .expect("policy");
    let events = Path::new(vigil::artifacts::STARTER_PACK_DIR).join("events.jsonl");
    let events = events.to_str().expect("utf-8 path");
    let one = vigil(&["run", "--pack", "pack", "--input", events], dir.path());
    assert!(one.status.success(), "{}", text(&one.stderr));
    let two = vigil(
        &[
            "run",
            "--pack",
            "pack",
            "--pack",
            "second",
            "--input",
            events,
            "--state-dir",
            "s2",
        ],
        dir.path(),
    );
    assert!(two.status.success(), "{}", text(&two.stderr));
    let packs_of = |out: &Output| {
        let mut packs: Vec<(String, String, u64)> = text(&out.stdout)
            .lines()
            .map(|l| {
                let f: serde_json::Value = serde_json::from_str(l).expect("JSON");
                (
                    f["pack"].as_str().expect("pack").to_owned(),
                    f["rule_id"].as_str().expect("rule").to_owned(),
                    f["event"]["line"].as_u64().expect("line"),
                )
            })
            .collect();
        packs.sort();
        packs
    };
    let single = packs_of(&one);
    let both = packs_of(&two);
    assert!(!single.is_empty());
    let mut expected: Vec<_> = (single.iter())
        .flat_map(|(_, rule, line)| {
            [
                ("second".to_owned(), rule.clone(), *line),
                ("starter".to_owned(), rule.clone(), *line),
            ]
        })
        .collect();
    expected.sort();
    assert_eq!(both, expected, "each pack finds what it finds alone");
    // Two packs of one name would share findings, state and audit names.
    let same = vigil(
        &[
            "run",
            "--pack",
            "pack",
            "--pack",
            "pack",
            "--input",
            events,
            "--state-dir",
            "s3",
        ],
        dir.path(),
    );
    assert!(!same.status.success());
    assert!(
        text(&same.stderr).contains("two packs are named `starter`"),
        "{}",
        text(&same.stderr)
    );
}

#[test]
fn kill_9_at_random_points_then_resume_leaves_stateful_counts_as_an_uninterrupted_run() {
    use std::time::{SystemTime, UNIX_EPOCH};

    const EVENTS: u64 = 60_000;
    const BATCH: u64 = 256;
    let dir = tempfile::tempdir().expect("tempdir");
    // A detector that adds each batch's event count to `count/total` in its
    // state and reports the total on the batch's first event: exact state
    // makes every total the number of the batch's last event.
    let pack = dir.path().join("pack");
    std::fs::create_dir_all(&pack).expect("mkdir");
    std::fs::copy(
        vigil_test_artifacts::component_path("hostile").expect("hostile test plugin built"),
        pack.join("hostile.wasm"),
    )
    .expect("copy component");
    std::fs::write(
        pack.join("pack.toml"),
        "name = \"t\"\nversion = \"1.0.0\"\n\n[[plugins]]\nid = \"counter\"\ncomponent = \"hostile.wasm\"\n\
         world = \"detector\"\ncapabilities = [\"log\", \"config\", \"state\", \"clock\"]\n\
         config = { mode = \"counter\" }\n",
    )
    .expect("pack.toml");
    std::fs::write(
        dir.path().join("vigil.toml"),
        "[packs.t.plugins.counter]\ncapabilities = [\"log\", \"config\", \"state\", \"clock\"]\n\
         state = { key_prefixes = [\"count/\"] }\n",
    )
    .expect("vigil.toml");
    let lines: String = (1..=EVENTS).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    std::fs::write(dir.path().join("events.jsonl"), lines).expect("write events");
    let segment = dir.path().join(".vigil/audit/00000001.jsonl");
    let run = |output: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vigil"));
        (command.args([
            "run",
            "--pack",
            "pack",
            "--input",
            "events.jsonl",
            "--output",
            output,
        ]))
        .args(["--batch-size", &BATCH.to_string()])
        .current_dir(dir.path())
        .env("VIGIL_LOG", "error");
        command
    };
    // Kill points: random log sizes, printed so a failure can be rerun.
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos() as u64;
    let mut outputs: Vec<String> = Vec::new();
    let mut threshold = 0u64;
    for attempt in 0..3u64 {
        threshold += 200_000 + (seed.wrapping_mul(attempt + 7) % 900_000);
        eprintln!("attempt {attempt}: kill once the log passes {threshold} bytes (seed {seed})");
        let output = format!("findings{attempt}.jsonl");
        let mut child = run(&output).spawn().expect("start vigil");
        // A run that finishes before the kill point has nothing to kill.
        kill_once_log_passes(&mut child, &segment, threshold);
        outputs.push(output);
    }
    let out = run("findings-last.jsonl").output().expect("resume");
    assert!(out.status.success(), "{}", text(&out.stderr));
    outputs.push("findings-last.jsonl".into());

    // The log holds every batch's findings exactly once (a killed run may
    // not have flushed the last findings it recorded to its output file).
    let mut totals = Vec::new();
    vigil::audit::query::for_each(&dir.path().join(".vigil/audit"), |entry, _| {
        if let vigil::audit::record::Record::Invocation(inv) = entry.record {
            for finding in inv.findings {
                let total = (finding.evidence.iter())
                    .find(|(k, _)| k == "total")
                    .and_then(|(_, v)| v.parse::<u64>().ok())
                    .expect("total evidence");
                totals.push((finding.event.line, total));
            }
        }
    })
    .expect("read the log");
    // What the runs emitted is what the log holds, less the last batches a
    // killed run had recorded but not yet flushed.
    let mut emitted = 0;
    for output in &outputs {
        let written = std::fs::read_to_string(dir.path().join(output)).unwrap_or_default();
        emitted += written.lines().filter(|l| l.ends_with('}')).count();
    }
    assert!(
        emitted <= totals.len() && emitted + 3 * 2 >= totals.len(),
        "{emitted} emitted"
    );
    totals.sort_unstable();
    let expected: Vec<(u64, u64)> = (0..EVENTS.div_ceil(BATCH))
        .map(|b| (b * BATCH + 1, ((b + 1) * BATCH).min(EVENTS)))
        .collect();
    assert_eq!(
        totals.len(),
        expected.len(),
        "one finding per batch, none twice"
    );
    assert_eq!(totals, expected, "every total counts each event once");
}
