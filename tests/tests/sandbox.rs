//! Grants, limits and failure isolation, with real components.

use vigil::capability::Capability;
use vigil::load::pack::LoadError;
use vigil_tests::{PluginSpec, TestPack, events, evidence, run};

const ALL_CAPS: &str = r#""log", "config", "state", "clock""#;

fn hostile(id: &'static str, config: &'static str) -> PluginSpec<'static> {
    PluginSpec {
        id,
        crate_name: "hostile",
        capabilities: ALL_CAPS,
        config,
    }
}

/// Grants every capability to plugins `ids` of pack `t`, plus `extra` TOML.
fn policy(ids: &[&str], extra: &str) -> String {
    let mut p = String::new();
    for id in ids {
        p.push_str(&format!(
            "[packs.t.plugins.{id}]\ncapabilities = [{ALL_CAPS}]\nstate = {{ key_prefixes = [\"count/\"] }}\n{extra}\n"
        ));
    }
    p
}

#[test]
fn ungranted_import_is_refused_at_load_naming_pack_plugin_and_interface() {
    let pack = TestPack::new(&[hostile("h", r#"mode = "echo""#)]);
    let errors = pack
        .load("[packs.t.plugins.h]\ncapabilities = [\"log\", \"config\", \"clock\"]\n")
        .expect_err("state is imported but not granted");
    let refused: Vec<_> = errors
        .0
        .iter()
        .filter_map(|e| match e {
            LoadError::NotGranted {
                pack,
                plugin,
                interface,
                capability,
                ..
            } => Some((
                pack.as_str(),
                plugin.as_str(),
                interface.as_str(),
                *capability,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        refused,
        vec![("t", "h", "vigil:plugin/state@0.1.0", Capability::State)]
    );
    let message = errors.to_string();
    assert!(message.contains("pack `t`, plugin `h`"), "{message}");
    assert!(
        message.contains("[packs.t.plugins.h]"),
        "message says where to grant it: {message}"
    );
}

#[test]
fn a_capability_granted_but_not_requested_is_still_refused() {
    let pack = TestPack::new(&[PluginSpec {
        id: "h",
        crate_name: "hostile",
        capabilities: r#""log", "config", "clock""#,
        config: "",
    }]);
    let errors = pack
        .load(&policy(&["h"], ""))
        .expect_err("state not requested in pack.toml");
    assert!(errors.to_string().contains("not requested"), "{errors}");
}

#[test]
fn no_policy_entry_means_nothing_is_granted() {
    let pack = TestPack::new(&[hostile("h", "")]);
    let errors = pack.load("").expect_err("deny by default");
    assert_eq!(
        errors.0.len(),
        4,
        "one refusal per imported capability: {errors}"
    );
}

#[test]
fn key_outside_granted_prefixes_returns_access_denied_to_the_plugin() {
    let pack = TestPack::new(&[hostile("h", r#"mode = "state-outside-prefix""#)]);
    let (_rt, generation) = pack.load(&policy(&["h"], "")).expect("loads");
    let (stats, findings) = run(&generation, &events(3), 10);
    assert_eq!(
        stats.failed_calls, 0,
        "a denied key is an error value, not a trap"
    );
    assert_eq!(findings.len(), 1);
    assert_eq!(evidence(&findings[0], "result"), Some("access denied"));
}

#[test]
fn endless_loop_is_stopped_by_the_deadline_and_the_host_carries_on() {
    let pack = TestPack::new(&[
        hostile("spin", r#"mode = "loop""#),
        hostile("echo", r#"mode = "echo""#),
    ]);
    let extra = "limits = { deadline_ms = 50, quarantine_after = 2 }";
    let (_rt, generation) = pack.load(&policy(&["spin", "echo"], extra)).expect("loads");
    let (stats, findings) = run(&generation, &events(12), 4);
    // Three batches: the looping plugin fails twice, is quarantined, and is
    // skipped for the third; the well-behaved one sees every event.
    assert_eq!(stats.events, 12);
    assert_eq!(stats.failed_calls, 2);
    assert_eq!(stats.quarantined.len(), 1);
    assert!(
        stats.quarantined[0].contains("t/spin"),
        "{:?}",
        stats.quarantined
    );
    assert!(
        stats.quarantined[0].contains("deadline"),
        "{:?}",
        stats.quarantined
    );
    assert_eq!(findings.iter().filter(|f| f.plugin == "echo").count(), 12);
}

#[test]
fn deadline_outcome_is_reported_as_a_deadline() {
    let pack = TestPack::new(&[hostile("spin", r#"mode = "loop""#)]);
    let (_rt, generation) = pack
        .load(&policy(&["spin"], "limits = { deadline_ms = 20 }"))
        .expect("loads");
    let batch = one_batch(3);
    let outcome = generation.detectors[0].detect(&batch);
    assert!(
        matches!(
            outcome.result,
            Err(vigil::run::plugin::CallError::Deadline(_))
        ),
        "{:?}",
        outcome.result
    );
}

#[test]
fn memory_growth_past_the_cap_fails_the_call_only() {
    let pack = TestPack::new(&[
        hostile("bomb", r#"mode = "memory-bomb""#),
        hostile("echo", r#"mode = "echo""#),
    ]);
    let (_rt, generation) = pack
        .load(&policy(&["bomb", "echo"], "limits = { memory_mb = 16 }"))
        .expect("loads");
    let batch = one_batch(2);
    let outcome = generation.detectors[0].detect(&batch);
    assert_eq!(
        outcome.result,
        Err(vigil::run::plugin::CallError::MemoryLimit(16 << 20))
    );
    // The next call on the same plugin gets a fresh instance (and fails the
    // same way); the other plugin is unaffected.
    assert!(generation.detectors[0].detect(&batch).result.is_err());
    assert_eq!(
        generation.detectors[1]
            .detect(&batch)
            .result
            .map(|f| f.len()),
        Ok(2)
    );
}

#[test]
fn a_trap_fails_the_call_and_the_next_batch_still_runs() {
    let pack = TestPack::new(&[
        hostile("trap", r#"mode = "trap""#),
        hostile("echo", r#"mode = "echo""#),
    ]);
    let (_rt, generation) = pack
        .load(&policy(
            &["trap", "echo"],
            "limits = { quarantine_after = 5 }",
        ))
        .expect("loads");
    let (stats, findings) = run(&generation, &events(6), 2);
    assert_eq!(stats.failed_calls, 3);
    assert!(stats.quarantined.is_empty());
    assert_eq!(findings.len(), 6);
}

#[test]
fn oversized_or_misdirected_output_fails_the_call() {
    let pack = TestPack::new(&[
        hostile("flood", r#"mode = "flood""#),
        hostile("foreign", r#"mode = "foreign-event-id""#),
    ]);
    let (_rt, generation) = pack
        .load(&policy(
            &["flood", "foreign"],
            "limits = { max_findings_per_batch = 1000, deadline_ms = 20000 }",
        ))
        .expect("loads");
    let batch = one_batch(2);
    assert_eq!(
        generation.detectors[0].detect(&batch).result,
        Err(vigil::run::plugin::CallError::TooManyFindings {
            count: 100_000,
            max: 1000
        })
    );
    assert_eq!(
        generation.detectors[1].detect(&batch).result,
        Err(vigil::run::plugin::CallError::UnknownEvent(u64::MAX))
    );
}

#[test]
fn wasi_grants_nothing_no_files_env_args_or_real_time() {
    let pack = TestPack::new(&[hostile("h", r#"mode = "escape""#)]);
    let (_rt, generation) = pack.load(&policy(&["h"], "")).expect("loads");
    let (_, findings) = run(&generation, &events(1), 1);
    let f = &findings[0];
    assert!(
        evidence(f, "file").is_some_and(|v| v.starts_with("error")),
        "{f:?}"
    );
    assert!(
        evidence(f, "dir").is_some_and(|v| v.starts_with("error")),
        "{f:?}"
    );
    assert_eq!(evidence(f, "env"), Some("0"));
    assert_eq!(evidence(f, "args"), Some("0"));
    assert_eq!(
        evidence(f, "wasi_time"),
        Some("0"),
        "WASI clocks are frozen; time comes from `clock`"
    );
}

#[test]
fn guest_stdout_and_log_calls_are_captured_into_the_plugin_log() {
    let pack = TestPack::new(&[hostile("h", r#"mode = "print""#)]);
    let (_rt, generation) = pack.load(&policy(&["h"], "")).expect("loads");
    let outcome = generation.detectors[0].detect(&one_batch(2));
    let messages: Vec<_> = outcome
        .logs
        .iter()
        .map(|l| (l.source, l.message.as_str()))
        .collect();
    use vigil::capability::log::LogSource;
    assert!(
        messages.contains(&(LogSource::Plugin, "hello from log")),
        "{messages:?}"
    );
    assert!(
        messages.contains(&(LogSource::Stdout, "hello from stdout")),
        "{messages:?}"
    );
    assert!(
        messages.contains(&(LogSource::Stderr, "hello from stderr")),
        "{messages:?}"
    );
}

#[test]
fn clock_and_config_capabilities_answer_when_granted() {
    let pack = TestPack::new(&[
        hostile("c", r#"mode = "clock""#),
        hostile("g", r#"mode = "config""#),
    ]);
    let (_rt, generation) = pack.load(&policy(&["c", "g"], "")).expect("loads");
    let (_, findings) = run(&generation, &events(1), 1);
    let wall: u64 = evidence(&findings[0], "wall")
        .and_then(|v| v.parse().ok())
        .expect("a number");
    assert!(wall > 1_577_836_800_000_000_000, "after 2020: {wall}");
    assert_eq!(evidence(&findings[1], "mode"), Some("Some(\"config\")"));
}

#[test]
fn plugin_state_survives_a_host_restart() {
    let pack = TestPack::new(&[hostile("h", r#"mode = "counter""#)]);
    let policy = policy(&["h"], "");
    {
        let (_rt, generation) = pack.load(&policy).expect("loads");
        let (_, findings) = run(&generation, &events(3), 10);
        assert_eq!(evidence(&findings[0], "total"), Some("3"));
    }
    // A new runtime and generation: nothing shared but the state directory.
    let (_rt, generation) = pack.load(&policy).expect("reloads");
    let (_, findings) = run(&generation, &events(4), 10);
    assert_eq!(evidence(&findings[0], "total"), Some("7"));
}

#[test]
fn a_plugin_that_declares_fields_receives_only_those() {
    let pack = TestPack::new(&[hostile("p", r#"mode = "projected""#)]);
    let (_rt, generation) = pack.load(&policy(&["p"], "")).expect("loads");
    let event = r#"{"Event":{"System":{"EventID":1},"EventData":{"Image":"a.exe","CommandLine":"secret"}}}"#;
    let (_, findings) = run(&generation, &format!("{event}\n"), 1);
    assert_eq!(
        evidence(&findings[0], "event"),
        Some(r#"{"Event":{"EventData":{"Image":"a.exe"}}}"#)
    );
}

#[test]
fn declaring_an_absurd_number_of_fields_fails_the_call() {
    let pack = TestPack::new(&[hostile("m", r#"mode = "many-fields""#)]);
    let (_rt, generation) = pack.load(&policy(&["m"], "")).expect("loads");
    let result = generation.detectors[0].detect(&one_batch(1)).result;
    assert!(
        matches!(&result, Err(vigil::run::plugin::CallError::Init(m)) if m.contains("10000 event fields")),
        "{result:?}"
    );
}

fn one_batch(n: usize) -> vigil_event::Batch {
    let text = events(n);
    let mut reader = vigil::pipeline::input::BatchReader::new(text.as_bytes());
    let mut batch = vigil_event::Batch::new();
    let mut malformed = Vec::new();
    assert!(reader.fill(&mut batch, n, &mut malformed).expect("read"));
    batch
}

/// The hostile plugin sleeps an hour (`wasi:clocks` subscribe + `wasi:io/poll`);
/// before the poll was bounded, a 5 s sleep made a 250 ms call take 5 s
/// and this test would not end.
#[test]
fn a_sleeping_plugin_call_ends_at_its_deadline_in_detect_and_in_init() {
    let pack = TestPack::new(&[
        hostile("sleep", r#"mode = "sleep""#),
        hostile("init", r#"mode = "sleep-in-init""#),
        hostile("echo", r#"mode = "echo""#),
    ]);
    let extra = "limits = { deadline_ms = 200, quarantine_after = 10 }";
    let (_rt, generation) = pack
        .load(&policy(&["sleep", "init", "echo"], extra))
        .expect("loads");
    let batch = one_batch(2);
    for plugin in &generation.detectors[..2] {
        let outcome = plugin.detect(&batch);
        assert_eq!(
            outcome.result,
            Err(vigil::run::plugin::CallError::Deadline(
                std::time::Duration::from_millis(200)
            )),
            "{}",
            plugin.label()
        );
        // Deadline plus the watchdog's grace, with room for a slow machine;
        // an hour if the sleep were real.
        assert!(
            outcome.elapsed < std::time::Duration::from_secs(2),
            "{}: {:?}",
            plugin.label(),
            outcome.elapsed
        );
    }
    let (stats, findings) = run(&generation, &events(8), 4);
    assert_eq!((stats.events, stats.failed_calls), (8, 4));
    assert_eq!(findings.len(), 8, "the well-behaved plugin saw every event");
    assert_eq!(
        vigil::run::watchdog::overruns(),
        0,
        "no call outlived its deadline"
    );
}

#[test]
fn a_finding_with_an_evidence_flood_is_refused() {
    let pack = TestPack::new(&[hostile("flood", r#"mode = "evidence-flood""#)]);
    let (_rt, generation) = pack
        .load(&policy(&["flood"], "limits = { deadline_ms = 20000 }"))
        .expect("loads");
    assert_eq!(
        generation.detectors[0].detect(&one_batch(1)).result,
        Err(vigil::run::plugin::CallError::TooManyEntries {
            what: "evidence entries",
            count: 500_000,
            max: vigil::finding::MAX_EVIDENCE_PER_FINDING,
        })
    );
}

#[test]
fn a_huge_plugin_error_is_kept_and_shown_clamped() {
    let pack = TestPack::new(&[hostile("loud", r#"mode = "huge-error""#)]);
    let (_rt, generation) = pack
        .load(&policy(&["loud"], "limits = { deadline_ms = 20000 }"))
        .expect("loads");
    let outcome = generation.detectors[0].detect(&one_batch(1));
    let Err(vigil::run::plugin::CallError::Init(message)) = outcome.result else {
        panic!("{:?}", outcome.result.map(|f| f.len()));
    };
    assert!(message.len() < 8192, "{} bytes kept", message.len());
    assert!(message.ends_with(&format!(
        "(cut from {} bytes)",
        (40 << 20) + "internal error: ".len()
    )));
}

#[test]
fn a_detector_whose_init_returns_an_error_ten_times_in_a_row_is_never_quarantined() {
    // `init` refuses the unknown mode with an error value: the plugin
    // handling bad input, not misbehaving.
    let pack = TestPack::new(&[hostile("picky", r#"mode = "no-such-mode""#)]);
    let (_rt, generation) = pack
        .load(&policy(&["picky"], "limits = { quarantine_after = 2 }"))
        .expect("loads");
    let (stats, _) = run(&generation, &events(10), 1);
    assert_eq!(stats.failed_calls, 10, "every batch was given to it");
    assert!(stats.quarantined.is_empty(), "{:?}", stats.quarantined);
    assert!(generation.detectors[0].quarantine().is_none());
}

/// Events made one at a time, as the dispatcher asks for them, until
/// `plugin` has been quarantined twice and then lifted (or 20 s pass).
/// Time passes between events; the reader watches the plugin's state
/// rather than sleeping for the back-off.
struct UntilLifted<'a> {
    plugin: &'a vigil::run::plugin::LoadedPlugin,
    started: std::time::Instant,
    /// Back-offs of the quarantines seen, in order.
    backoffs: Vec<std::time::Duration>,
    last_until: Option<std::time::SystemTime>,
    line: Vec<u8>,
    pos: usize,
    n: u64,
}

impl std::io::Read for UntilLifted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = std::io::BufRead::fill_buf(self)?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        std::io::BufRead::consume(self, n);
        Ok(n)
    }
}

impl std::io::BufRead for UntilLifted<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.pos < self.line.len() {
            return Ok(&self.line[self.pos..]);
        }
        match self.plugin.quarantine() {
            Some(q) if self.last_until != Some(q.until) => {
                self.last_until = Some(q.until);
                self.backoffs.push(q.backoff);
            }
            None if self.backoffs.len() >= 2 => return Ok(&[]),
            _ => {}
        }
        if self.started.elapsed() > std::time::Duration::from_secs(20) {
            return Ok(&[]);
        }
        // A trickle of events, not a wait for the back-off: each one asks
        // the host whether the quarantine is over.
        std::thread::sleep(std::time::Duration::from_millis(10));
        self.n += 1;
        self.line = format!("{{\"n\":{}}}\n", self.n).into_bytes();
        self.pos = 0;
        Ok(&self.line)
    }

    fn consume(&mut self, amount: usize) {
        self.pos += amount;
    }
}

#[test]
fn a_trapping_detector_is_quarantined_skipped_probed_requarantined_for_twice_as_long_then_lifted_by_a_good_probe()
 {
    use vigil::audit::record::{Lifecycle, Outcome, Record};
    // Traps on its first three calls: two make the quarantine, the third is
    // the first probe; the fourth call (second probe) behaves.
    let pack = TestPack::new(&[
        hostile("flaky", r#"mode = "trap-then-echo", traps = "3""#),
        hostile("echo", r#"mode = "echo""#),
    ]);
    let extra = "limits = { quarantine_after = 2, quarantine_ms = 200 }";
    let (runtime, generation) = pack
        .load(&policy(&["flaky", "echo"], extra))
        .expect("loads");
    let audit = pack.dir.path().join("audit");
    let mut auditor = vigil::audit::Auditor::open(&runtime.policy.audit, &audit).expect("opens");
    vigil::pipeline::record::pack_load(&mut auditor, &generation).expect("recorded");
    let mut reader = UntilLifted {
        plugin: &generation.detectors[0],
        started: std::time::Instant::now(),
        backoffs: Vec::new(),
        last_until: None,
        line: Vec::new(),
        pos: 0,
        n: 0,
    };
    let mut out = Vec::new();
    let stats = vigil::pipeline::dispatch::run_audited(
        &generation,
        vigil::pipeline::input::BatchReader::new(&mut reader),
        "trickle",
        1,
        &mut out,
        Some(&mut auditor),
    )
    .expect("run");
    auditor.close("test done").expect("closes");

    let ms = std::time::Duration::from_millis;
    assert_eq!(
        reader.backoffs,
        vec![ms(200), ms(400)],
        "doubled on the failed probe"
    );
    assert!(generation.detectors[0].quarantine().is_none(), "lifted");
    assert_eq!(stats.quarantined.len(), 1, "{:?}", stats.quarantined);
    let findings = vigil_tests::parse_findings(&out);
    let echoed = |plugin: &str| findings.iter().filter(|f| f.plugin == plugin).count() as u64;
    assert_eq!(
        echoed("echo"),
        stats.events,
        "the other detector saw every event"
    );
    assert_eq!(echoed("flaky"), 1, "only the good probe's event");
    assert!(
        stats.events > 4,
        "batches went by while it was quarantined: {}",
        stats.events
    );

    // The log tells the whole story, in order, around the calls.
    let mut story = Vec::new();
    vigil::audit::query::for_each(&audit, |entry, _| match entry.record {
        Record::Invocation(inv) if inv.plugin == "flaky" => story.push(format!(
            "{}{}",
            if inv.probe { "probe " } else { "" },
            match inv.outcome {
                Outcome::Ok => "ok",
                Outcome::Trap => "trap",
                _ => "other",
            }
        )),
        Record::Lifecycle(Lifecycle::Quarantine {
            plugin,
            until,
            backoff_ms,
            reason,
            ..
        }) if plugin == "flaky" => {
            assert!(until.is_some(), "{reason}");
            assert!(reason.contains("trapped"), "{reason}");
            story.push(format!("quarantined {}ms", backoff_ms.unwrap_or(0)));
        }
        Record::Lifecycle(Lifecycle::QuarantineProbe { plugin, .. }) if plugin == "flaky" => {
            story.push("probing".into())
        }
        Record::Lifecycle(Lifecycle::QuarantineLifted { plugin, reason, .. })
            if plugin == "flaky" =>
        {
            story.push(format!("lifted: {reason}"))
        }
        _ => {}
    })
    .expect("log reads");
    assert_eq!(
        story,
        [
            "trap",
            "trap",
            "quarantined 200ms",
            "probing",
            "probe trap",
            "quarantined 400ms",
            "probing",
            "probe ok",
            "lifted: probe succeeded",
        ]
    );
    vigil::audit::verify::verify(&audit).expect("the log verifies");
}

#[test]
fn a_restore_of_any_capability_lifts_the_quarantine_of_the_plugin_at_once() {
    use vigil::audit::record::{Lifecycle, Record};
    use vigil::revocation::{Action, ChangeRequest, RevocationList};
    let pack = TestPack::new(&[hostile("flaky", r#"mode = "trap-then-echo", traps = "2""#)]);
    // A back-off far longer than the test.
    let extra = "limits = { quarantine_after = 2, quarantine_ms = 600000 }";
    let (runtime, generation) = pack.load(&policy(&["flaky"], extra)).expect("loads");
    let (stats, _) = run(&generation, &events(3), 1);
    assert_eq!(stats.failed_calls, 2, "the third batch was skipped");
    assert!(generation.detectors[0].quarantine().is_some());

    // `vigil revoke flaky --capability clock` then `vigil restore flaky`, as
    // the running host sees them.
    let request = |action, by: &str| ChangeRequest {
        action,
        plugin: "flaky".into(),
        capability: (action == Action::Revoke).then_some(Capability::Clock),
        reason: "test".into(),
        by: by.into(),
        at: "2026-11-22T00:00:00Z".parse().expect("a time"),
    };
    let mut list = RevocationList::default();
    list.change(request(Action::Revoke, "alice"))
        .expect("revokes");
    runtime.revocations.replace(list.clone());
    assert!(
        generation.detectors[0].quarantine().is_some(),
        "a revocation changes nothing"
    );
    list.change(request(Action::Restore, "bob"))
        .expect("restores");
    runtime.revocations.replace(list);

    let audit = pack.dir.path().join("audit");
    let out = pack_run_audited(&runtime, &generation, &audit, 1);
    assert!(generation.detectors[0].quarantine().is_none());
    assert_eq!(vigil_tests::parse_findings(&out).len(), 1, "called again");
    let mut story = Vec::new();
    vigil::audit::query::for_each(&audit, |entry, _| match entry.record {
        Record::Lifecycle(Lifecycle::QuarantineLifted { reason, .. }) => {
            story.push(format!("lifted: {reason}"))
        }
        Record::Invocation(inv) => story.push(format!("{:?}", inv.outcome)),
        _ => {}
    })
    .expect("log reads");
    assert_eq!(story, ["lifted: restored by bob", "Ok"]);
}

/// Run `n` events through `generation` in batches of 1, audited in `audit`.
fn pack_run_audited(
    runtime: &vigil::load::runtime::Runtime,
    generation: &std::sync::Arc<vigil::load::pack::Generation>,
    audit: &std::path::Path,
    n: usize,
) -> Vec<u8> {
    let mut auditor = vigil::audit::Auditor::open(&runtime.policy.audit, audit).expect("opens");
    let mut out = Vec::new();
    let text = events(n);
    vigil::pipeline::dispatch::run_audited(
        generation,
        vigil::pipeline::input::BatchReader::new(text.as_bytes()),
        "test.jsonl",
        1,
        &mut out,
        Some(&mut auditor),
    )
    .expect("run");
    auditor.close("test done").expect("closes");
    out
}

/// Issue 9: one plugin writing 64 KiB values grew the host to 580 MiB and
/// 1 GB on disk. State now lives in an embedded store with a byte quota;
/// past it the plugin gets `quota-exceeded` as a value and disk stays bounded.
#[test]
fn state_growth_is_refused_at_the_quota_with_the_store_on_disk_bounded() {
    let pack = TestPack::new(&[hostile("hog", r#"mode = "state-hog""#)]);
    let grant = "[packs.t.plugins.hog]\ncapabilities = [\"log\", \"config\", \"state\", \"clock\"]\n\
                 state = { key_prefixes = [\"count/\"], max_total_bytes = 1048576 }\n";
    let (_rt, generation) = pack.load(grant).expect("loads");
    let (stats, findings) = run(&generation, &events(40), 4);
    assert_eq!((stats.events, stats.failed_calls), (40, 0));
    let stored: u64 = (findings.iter())
        .map(|f| {
            evidence(f, "stored")
                .expect("reported")
                .parse::<u64>()
                .expect("count")
        })
        .sum();
    // 1 MiB holds 15 values of 64 KiB (plus their keys), not 16.
    assert_eq!(stored, 15);
    let refused: Vec<_> = (findings.iter())
        .filter_map(|f| evidence(f, "refused").filter(|r| !r.is_empty()))
        .collect();
    assert!(
        !refused.is_empty() && refused.iter().all(|r| *r == "quota exceeded"),
        "{refused:?}"
    );
    let file = pack.state_dir.join("t").join("hog.state.redb");
    let bytes = std::fs::metadata(&file).expect("state file").len();
    assert!(bytes < 4 << 20, "{bytes} bytes on disk for a 1 MiB quota");
}

/// `init` runs once at load and instances start from its snapshot; a
/// plugin whose `init` calls a host import (here `log`) cannot be
/// snapshotted and still works, running `init` on every instance, with the
/// import's call recorded on every invocation.
#[test]
fn a_plugin_whose_init_calls_a_host_import_falls_back_to_per_instance_init() {
    use vigil::load::preinit::InitMode;
    let pack = TestPack::new(&[
        hostile("echo", r#"mode = "echo""#),
        hostile("logger", r#"mode = "log-in-init""#),
    ]);
    let (_rt, generation) = pack.load(&policy(&["echo", "logger"], "")).expect("loads");
    let [echo, logger] = &generation.detectors[..] else {
        panic!("two detectors")
    };
    assert!(
        matches!(echo.init_mode(), InitMode::Snapshot { .. }),
        "{:?}",
        echo.init_mode()
    );
    let InitMode::PerInstance { why } = logger.init_mode() else {
        panic!("the logger cannot be snapshotted: {:?}", logger.init_mode())
    };
    assert!(why.contains("host import"), "{why}");

    let batch = one_batch(3);
    for _ in 0..2 {
        let snapshot = echo.detect(&batch);
        assert_eq!(snapshot.result.map(|f| f.len()), Ok(3));
        assert!(snapshot.host_calls.is_empty(), "no init, no host calls");
        let fallback = logger.detect(&batch);
        assert_eq!(fallback.result.map(|f| f.len()), Ok(3), "still works");
        assert_eq!(
            (fallback.host_calls.iter())
                .map(|c| (c.interface.as_str(), c.function.as_str()))
                .collect::<Vec<_>>(),
            [("log", "emit")],
            "init ran on this instance and its log call was recorded"
        );
    }
    // The load report says so too (what `vigil check` prints).
    let modes: Vec<_> = (generation.reports.iter())
        .map(|r| r.init.as_ref().map(|i| i.mode.name()))
        .collect();
    assert_eq!(modes, [Some("snapshot"), Some("per-instance")]);
}

/// What `init` read at load lives in the snapshot, so a revocation of that
/// capability must reach it: after `vigil revoke ... --capability files`
/// the next call runs `init` again on the original component and meets the
/// revocation; after a restore the snapshot is used again.
#[test]
fn revoking_what_init_read_at_load_reaches_snapshotted_instances() {
    use vigil::load::preinit::InitMode;
    use vigil::revocation::{self, Action, ChangeRequest};
    use vigil::run::plugin::CallError;

    let pack = TestPack::new(&[PluginSpec {
        id: "ioc",
        crate_name: "ioc-match",
        capabilities: "\"files\"",
        config: "lists = [\"intel/iocs.txt\"]",
    }]);
    std::fs::create_dir_all(pack.path().join("intel")).expect("intel");
    std::fs::write(pack.path().join("intel/iocs.txt"), "evil.example\n").expect("list");
    let (runtime, generation) = pack
        .load("[packs.t.plugins.ioc]\ncapabilities = [\"files\"]\nfiles = { dirs = [\"intel\"] }\n")
        .expect("loads");
    let plugin = &generation.detectors[0];
    assert!(matches!(plugin.init_mode(), InitMode::Snapshot { .. }));
    let text = r#"{"Event":{"EventData":{"QueryName":"a.evil.example"}}}"#;
    let mut reader = vigil::pipeline::input::BatchReader::new(text.as_bytes());
    let mut batch = vigil_event::Batch::new();
    assert!(reader.fill(&mut batch, 1, &mut Vec::new()).expect("read"));
    assert_eq!(plugin.detect(&batch).result.map(|f| f.len()), Ok(1));

    let state_dir = pack.dir.path().join("state");
    let request = |action| ChangeRequest {
        action,
        plugin: "ioc".into(),
        capability: Some(Capability::Files),
        reason: "test".into(),
        by: "alice".into(),
        at: "2026-12-02T12:00:00Z".parse().expect("a time"),
    };
    let change = |action| {
        revocation::apply(
            &state_dir,
            &runtime.policy.audit,
            &state_dir.join("audit"),
            request(action),
        )
        .expect("applies");
        runtime
            .revocations
            .reload(&state_dir.join(revocation::FILE));
    };
    change(Action::Revoke);
    let outcome = plugin.detect(&batch);
    assert!(
        matches!(&outcome.result, Err(CallError::Init(why)) if why.contains("access denied")),
        "{:?}",
        outcome.result
    );
    assert_eq!(outcome.host_calls.len(), 1, "the refused read is recorded");
    change(Action::Restore);
    let outcome = plugin.detect(&batch);
    assert_eq!(outcome.result.map(|f| f.len()), Ok(1));
    assert!(outcome.host_calls.is_empty(), "from the snapshot again");
}
