//! The audit log with real components: replay from the log alone,
//! redaction down to the file bytes, fail-closed writing.

use vigil::audit::Auditor;
use vigil::audit::query;
use vigil::audit::record::Record;
use vigil::load::policy::Policy;
use vigil::pipeline::input::BatchReader;
use vigil::replay::{Selection, Verdict, replay};
use vigil_tests::{PluginSpec, TestPack, events};

/// The hostile test component imports every capability.
const ALL: &str = "\"log\", \"config\", \"state\", \"clock\"";

const POLICY: &str = r#"
[packs.t.plugins.clock]
capabilities = ["log", "config", "state", "clock"]
[packs.t.plugins.counter]
capabilities = ["log", "config", "state", "clock"]
state = { key_prefixes = ["count/"] }
"#;

fn clock_and_counter() -> TestPack {
    TestPack::new(&[
        PluginSpec {
            id: "clock",
            crate_name: "hostile",
            capabilities: ALL,
            config: "mode = \"clock\"",
        },
        PluginSpec {
            id: "counter",
            crate_name: "hostile",
            capabilities: ALL,
            config: "mode = \"counter\"",
        },
    ])
}

#[test]
fn replay_of_a_run_with_clock_and_state_reads_reproduces_every_output() {
    let pack = clock_and_counter();
    let audit_dir = pack.dir.path().join("audit");
    let out = pack.audited_run(POLICY, &audit_dir, &events(10));
    assert!(!out.is_empty(), "the plugins report findings");
    vigil::audit::verify::verify(&audit_dir).expect("the log verifies");

    let engine = vigil::load::engine::build_engine().expect("engine");
    let results = replay(&engine, &audit_dir, &Selection::default()).expect("replays");
    // 10 events in batches of 4: 3 batches, 2 plugins.
    assert_eq!(results.len(), 6);
    for r in &results {
        assert_eq!(r.verdict, Verdict::Identical, "{r:?}");
        assert!(r.findings > 0 && r.host_calls > 0, "{r:?}");
    }
    // The clock readings are in the record, which is why replay could match.
    let mut readings = 0;
    query::for_each(&audit_dir, |entry, _| {
        if let Record::Invocation(inv) = entry.record {
            readings += inv
                .host_calls
                .iter()
                .filter(|c| c.interface == "clock")
                .count();
        }
    })
    .expect("reads");
    assert_eq!(readings, 6, "two clock readings per clock invocation");
}

#[test]
fn replay_of_a_deliberately_altered_plugin_reports_the_mismatch() {
    let pack = clock_and_counter();
    let audit_dir = pack.dir.path().join("audit");
    pack.audited_run(POLICY, &audit_dir, &events(4));
    // Swap the stored component for another plugin's bytes.
    let digest = vigil::load::engine::sha256_hex(
        &std::fs::read(vigil_tests::component("hostile")).expect("read"),
    );
    let stored = audit_dir.join("components").join(format!("{digest}.wasm"));
    std::fs::copy(vigil_tests::component("bench-probe"), &stored).expect("swap");

    let engine = vigil::load::engine::build_engine().expect("engine");
    let results = replay(
        &engine,
        &audit_dir,
        &Selection {
            plugin: Some("clock".into()),
            ..Selection::default()
        },
    )
    .expect("replays");
    assert_eq!(results.len(), 1);
    match &results[0].verdict {
        Verdict::Mismatch(why) => assert!(why.contains("altered"), "{why}"),
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

#[test]
fn a_tampered_host_call_result_is_reported_as_the_first_difference() {
    let pack = clock_and_counter();
    let audit_dir = pack.dir.path().join("audit");
    pack.audited_run(POLICY, &audit_dir, &events(4));
    // Change the recorded state read: the plugin's output then differs.
    let segment = audit_dir.join("00000001.jsonl");
    let text = std::fs::read_to_string(&segment).expect("read");
    assert!(text.contains(
        r#""function":"get","args":{"key":"count/total"},"status":"allowed","result":{"ok":null}"#
    ));
    std::fs::write(
        &segment,
        text.replace(r#""result":{"ok":null}"#, r#""result":{"ok":"100"}"#),
    )
    .expect("write");
    let engine = vigil::load::engine::build_engine().expect("engine");
    let results = replay(
        &engine,
        &audit_dir,
        &Selection {
            plugin: Some("counter".into()),
            ..Selection::default()
        },
    )
    .expect("replays");
    match &results[0].verdict {
        // The plugin adds the tampered count and writes it back: the write
        // is the first thing that differs.
        Verdict::Mismatch(why) => {
            assert!(why.contains("host call #2") && why.contains("104"), "{why}")
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    assert!(
        vigil::audit::verify::verify(&audit_dir).is_err(),
        "and verify catches the edit"
    );
}

#[test]
fn redacted_fields_never_appear_in_the_file_bytes() {
    let pack = TestPack::new(&[PluginSpec {
        id: "echo",
        crate_name: "hostile",
        capabilities: ALL,
        config: "mode = \"projected\"",
    }]);
    // This plugin copies each batch's first `Image` into a finding: the
    // user name inside it must be scrubbed there too.
    let policy = "[audit]\nredact = { hash = [\"User\"], drop = [\"Host.Ip\"] }\n[packs.t.plugins.echo]\ncapabilities = [\"log\", \"config\", \"state\", \"clock\"]\n";
    let jsonl: String = (0..6)
        .map(|i| format!(
            "{{\"User\":\"alice.w{i}\",\"Host\":{{\"Ip\":\"203.0.113.{i}7\"}},\"Event\":{{\"EventData\":{{\"Image\":\"C:/Users/alice.w{i}/x.exe\"}}}}}}\n"
        ))
        .collect();
    let audit_dir = pack.dir.path().join("audit");
    let out = pack.audited_run(policy, &audit_dir, &jsonl);
    assert!(
        String::from_utf8_lossy(&out).contains("alice.w0"),
        "findings themselves are not redacted"
    );
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(&audit_dir).expect("dir").flatten() {
        if entry.path().extension().is_some_and(|e| e == "jsonl") {
            bytes.extend(std::fs::read(entry.path()).expect("read"));
        }
    }
    let text = String::from_utf8(bytes).expect("utf-8");
    assert!(text.contains("\"redacted\":true"));
    for i in 0..6 {
        assert!(!text.contains(&format!("alice.w{i}")), "user {i} leaked");
        assert!(!text.contains(&format!("203.0.113.{i}7")), "ip {i} leaked");
    }
    assert!(text.contains(&vigil::audit::redact::hash_token("alice.w0")));
    vigil::audit::verify::verify(&audit_dir).expect("a redacted log still verifies");
}

/// Run 8 events in batches of 4 with the audit log on a full disk (every
/// write to the segment fails with ENOSPC); returns the output and the error.
fn run_on_a_full_disk(
    pack: &TestPack,
    generation: &std::sync::Arc<vigil::load::pack::Generation>,
) -> (Vec<u8>, vigil::pipeline::dispatch::RunError) {
    let audit_dir = pack.dir.path().join("audit");
    std::fs::create_dir_all(&audit_dir).expect("mkdir");
    std::os::unix::fs::symlink("/dev/full", audit_dir.join("00000001.jsonl")).expect("symlink");
    let policy = Policy::parse("p.toml", "[audit]\nfsync_interval_ms = 0\n").expect("policy");
    let mut auditor = Auditor::open(&policy.audit, &audit_dir).expect("opens (empty log)");
    let mut out = Vec::new();
    let err = vigil::pipeline::dispatch::run_audited(
        generation,
        BatchReader::new(events(8).as_bytes()),
        "test.jsonl",
        4,
        &mut out,
        Some(&mut auditor),
    )
    .expect_err("fails closed");
    (out, err)
}

#[test]
fn an_unwritable_audit_log_stops_the_run_before_any_finding_is_emitted() {
    let pack = clock_and_counter();
    let (runtime, generation) = pack.load(POLICY).expect("loads");
    let (out, err) = run_on_a_full_disk(&pack, &generation);
    assert!(out.is_empty(), "no finding left the host");
    let message = err.to_string();
    assert!(
        message.contains("audit log") && message.contains("lines 1-4"),
        "{message}"
    );
    drop(runtime);
}

#[test]
fn a_grant_change_that_cannot_be_recorded_stops_the_run_and_says_so() {
    let pack = clock_and_counter();
    let (runtime, generation) = pack.load(POLICY).expect("loads");
    // A revocation put in force just before the run, not yet recorded:
    // its record comes first.
    let mut list = vigil::revocation::RevocationList::default();
    list.change(vigil::revocation::ChangeRequest {
        action: vigil::revocation::Action::Revoke,
        plugin: "clock".into(),
        capability: None,
        reason: "test".into(),
        by: "tester".into(),
        at: "2026-11-22T00:00:00Z".parse().expect("a time"),
    })
    .expect("revokes");
    generation.revocations.replace(list);
    let (out, err) = run_on_a_full_disk(&pack, &generation);
    assert!(out.is_empty(), "no finding left the host");
    assert!(
        matches!(
            err,
            vigil::pipeline::dispatch::RunError::AuditGrantChange { .. }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("grant change"), "{err}");
    drop(runtime);
}

#[test]
fn revokes_and_restores_made_while_no_host_runs_are_one_record_each_and_a_later_host_adds_none() {
    use vigil::audit::record::Lifecycle;
    use vigil::capability::Capability;
    use vigil::revocation::{Action, ChangeRequest, Recorded, apply};
    let pack = clock_and_counter();
    let audit_dir = pack.dir.path().join("audit");
    let changes = [
        (
            Action::Revoke,
            "counter",
            Some(Capability::State),
            "alice",
            "disk full",
        ),
        (Action::Revoke, "t/clock", None, "carol", "suspicious"),
        (Action::Restore, "counter", None, "bob", "disk replaced"),
    ];
    for (i, (action, plugin, capability, by, reason)) in changes.into_iter().enumerate() {
        let applied = apply(
            &pack.state_dir,
            &Default::default(),
            &audit_dir,
            ChangeRequest {
                action,
                plugin: plugin.into(),
                capability,
                reason: reason.into(),
                by: by.into(),
                at: format!("2026-11-22T1{i}:00:00Z").parse().expect("a time"),
            },
        )
        .expect("applies");
        assert_eq!(applied.recorded, Recorded::Now(audit_dir.clone()));
    }
    // A host started afterwards: the changes are in force, not recorded again.
    pack.audited_run(POLICY, &audit_dir, &events(4));

    let mut grant_changes = Vec::new();
    let mut in_force = Vec::new();
    query::for_each(&audit_dir, |entry, _| match entry.record {
        Record::Lifecycle(Lifecycle::GrantChange {
            action,
            plugin,
            capability,
            reason,
            by,
            requested_at,
            ..
        }) => grant_changes.push(format!(
            "{action} {} of {plugin} by {by} at {requested_at}: {reason}",
            capability.map_or("all", |c| c.name())
        )),
        Record::Lifecycle(Lifecycle::RevocationsInForce { revocations }) => {
            in_force.extend(revocations.into_iter().map(|r| r.plugin));
        }
        _ => {}
    })
    .expect("log reads");
    assert_eq!(
        grant_changes,
        [
            "revoke state of counter by alice at 2026-11-22T10:00:00Z: disk full",
            "revoke all of t/clock by carol at 2026-11-22T11:00:00Z: suspicious",
            "restore all of counter by bob at 2026-11-22T12:00:00Z: disk replaced",
        ]
    );
    assert_eq!(in_force, ["t/clock"], "noted at load, not as a change");
    vigil::audit::verify::verify(&audit_dir).expect("the log verifies");
}

/// Issue 9: with small segments, runs used to stop at a rotation with
/// "fdatasync: No such file or directory" (the sync thread and the
/// rotation raced on the `head` anchor).
#[test]
fn a_long_run_over_tiny_segments_completes_verifies_and_has_one_invocation_per_event() {
    let pack = clock_and_counter();
    let audit_dir = pack.dir.path().join("audit");
    let policy = format!("{POLICY}[audit]\nsegment_mb = 1\nfsync_interval_ms = 1\n");
    let n = 6_000u64;
    pack.audited_run(&policy, &audit_dir, &events(n as usize));
    let verified = vigil::audit::verify::verify(&audit_dir).expect("the log verifies");
    assert!(verified.segments >= 3, "{verified:?}");

    let mut batches = std::collections::HashMap::new();
    let mut seen: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    query::for_each(&audit_dir, |entry, _| match entry.record {
        Record::Batch(b) => {
            batches.insert(entry.seq, b.events.iter().map(|e| e.id).collect::<Vec<_>>());
        }
        Record::Invocation(inv) => seen
            .entry(inv.plugin)
            .or_default()
            .extend(batches.get(&inv.batch).expect("batch before invocation")),
        _ => {}
    })
    .expect("log reads");
    assert_eq!(seen.len(), 2);
    for (plugin, mut ids) in seen {
        ids.sort_unstable();
        assert_eq!(ids.len() as u64, n, "{plugin}: one invocation per event");
        ids.dedup();
        assert_eq!(
            ids,
            (1..=n).collect::<Vec<_>>(),
            "{plugin}: every event, none twice"
        );
    }
}

#[test]
fn replay_answers_file_reads_from_the_log_store_not_from_the_pack() {
    use vigil::host::{Host, HostOptions};
    use vigil::load::pack::PackSource;
    use vigil::pipeline::sink::Memory;
    use vigil::pipeline::source::Lines;

    // `reader` reads on every call; `ioc` reads the same file once, in
    // `init` at load, and runs from the snapshot.
    let pack = TestPack::new(&[
        PluginSpec {
            id: "reader",
            crate_name: "file-reader",
            capabilities: "\"files\"",
            config: "paths = [\"intel/list.txt\", \"intel/missing.txt\", \"../escape\"]",
        },
        PluginSpec {
            id: "ioc",
            crate_name: "ioc-match",
            capabilities: "\"files\"",
            config: "lists = [\"intel/list.txt\"]",
        },
    ]);
    std::fs::create_dir_all(pack.path().join("intel")).expect("intel dir");
    std::fs::write(pack.path().join("intel/list.txt"), "evil.example\n").expect("list");
    let audit_dir = pack.dir.path().join("audit");
    let grant = "capabilities = [\"files\"]\nfiles = { dirs = [\"intel/\"] }\n";
    let policy = format!("[packs.t.plugins.reader]\n{grant}[packs.t.plugins.ioc]\n{grant}");
    let options = HostOptions {
        policy: Policy::parse("policy.toml", &policy).expect("policy"),
        state_dir: pack.dir.path().join("state"),
        audit_dir: Some(audit_dir.clone()),
        command: "test".into(),
    };
    let mut host = Host::open(options, &[PackSource::Dir(pack.path().to_owned())]).expect("opens");
    let input = events(10);
    let mut sink = Memory::default();
    host.run(
        &mut Lines::new("test.jsonl", input.as_bytes()),
        &mut sink,
        None,
        4,
    )
    .expect("runs");
    host.close("test done").expect("closes");
    let outcomes: Vec<_> = (sink.findings.iter())
        .map(|f| {
            vigil_tests::evidence(f, "outcome")
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(outcomes.len(), 9, "3 paths x 3 batches: {outcomes:?}");
    assert_eq!(&outcomes[..3], ["13 bytes", "not found", "access denied"]);

    // The pack's file changes after the run; replay still reads what the
    // run read, from the audit directory's store.
    std::fs::write(pack.path().join("intel/list.txt"), "changed\n").expect("rewrite");
    let engine = vigil::load::engine::build_engine().expect("engine");
    let results = replay(&engine, &audit_dir, &Selection::default()).expect("replays");
    assert_eq!(results.len(), 6, "3 batches x 2 plugins");
    for r in &results {
        assert_eq!(r.verdict, Verdict::Identical, "{r:?}");
        let calls = if r.plugin == "t/reader" { 3 } else { 0 };
        assert_eq!(r.host_calls, calls, "{r:?}");
    }

    // A stored file that no longer matches its digest is a mismatch, not
    // a silent pass.
    let store = vigil::audit::files_store(&audit_dir);
    let stored = std::fs::read_dir(&store)
        .expect("store")
        .next()
        .expect("one file");
    std::fs::write(stored.expect("entry").path(), "tampered\n").expect("tamper");
    let results = replay(&engine, &audit_dir, &Selection::default()).expect("replays");
    for r in &results {
        assert!(
            matches!(&r.verdict, Verdict::Mismatch(why) if why.contains("does not hash")),
            "{r:?}"
        );
    }
}
