//! The `http` capability and the `ai-enrich` plugin against a real HTTP
//! server on loopback: grants, redirects, the resolved-address rule,
//! secrets, size and time limits, a service's 429/503 and `Retry-After`,
//! revocation mid-run, and replay from the audit log with the server
//! stopped.

use std::io::{PipeWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vigil::audit::Auditor;
use vigil::audit::query;
use vigil::audit::record::{CallStatus, Lifecycle, Record};
use vigil::capability::Capability;
use vigil::finding::{EnrichmentResult, FindingRecord};
use vigil::pipeline::input::BatchReader;
use vigil::replay::{Selection, Verdict, replay};
use vigil::revocation::{self, Action, ChangeRequest, Recorded, RevocationList};
use vigil_tests::ai_server::{AiServer, SUMMARY};
use vigil_tests::{PluginSpec, TestPack, events, parse_findings};

const SECRET: &str = "sk-test-7f3a9c2e5b";

/// A detector that reports every event (hostile `echo`) and `ai-enrich`
/// pointed at `base_url`.
fn pack(base_url: &str) -> TestPack {
    let config = format!("base_url = \"{base_url}\", model = \"test-model\"");
    let detector = PluginSpec {
        id: "det",
        crate_name: "hostile",
        capabilities: "\"log\", \"config\", \"state\", \"clock\"",
        config: "mode = \"echo\"",
    };
    let enricher = PluginSpec {
        id: "ai",
        crate_name: "ai-enrich",
        capabilities: "\"http\"",
        config: &config,
    };
    TestPack::with_worlds(&[(&detector, "detector"), (&enricher, "enricher")])
}

/// The policy: `ai` may POST to `origin` with the API key injected.
fn policy(pack: &TestPack, origin: &str, extra: &str) -> String {
    let secrets = pack.dir.path().join("secrets.toml");
    std::fs::write(&secrets, format!("AI_API_KEY = \"{SECRET}\"\n")).expect("secrets file");
    format!(
        r#"
[secrets]
file = "{}"
[packs.t.plugins.det]
capabilities = ["log", "config", "state", "clock"]
[packs.t.plugins.ai]
capabilities = ["http"]
limits = {{ deadline_ms = 1500 }}
[packs.t.plugins.ai.http]
origins = ["{origin}"]
methods = ["POST"]
max_response_bytes = 65536
timeout_ms = 5000
requests_per_minute = 1000
headers = [{{ origin = "{origin}", name = "Authorization", value = "Bearer ${{AI_API_KEY}}" }}]
{extra}
"#,
        secrets.display()
    )
}

/// Run `n` events through [`pack`] on `base_url` under [`policy`] for
/// `origin`, auditing; returns the pack, the audit dir and the findings.
fn enrich_run(base_url: &str, origin: &str, n: usize) -> (TestPack, PathBuf, Vec<FindingRecord>) {
    let pack = pack(base_url);
    let audit = pack.dir.path().join("audit");
    let out = pack.audited_run(&policy(&pack, origin, ""), &audit, &events(n));
    (pack, audit, parse_findings(&out))
}

/// The single enricher result of a finding.
fn enrichment(f: &FindingRecord) -> &EnrichmentResult {
    assert_eq!(f.enrichments.len(), 1, "{f:?}");
    &f.enrichments[0].result
}

fn unavailable_reason(f: &FindingRecord) -> String {
    match enrichment(f) {
        EnrichmentResult::Unavailable { reason } => reason.clone(),
        other => panic!("expected no enrichment, got {other:?}"),
    }
}

/// Every http host call recorded in the log, with its record's kind.
fn http_calls(audit: &Path) -> Vec<vigil::audit::record::HostCall> {
    let mut calls = Vec::new();
    query::for_each(audit, |entry, _| {
        if let Record::Enrichment(inv) = entry.record {
            calls.extend(inv.host_calls.into_iter().filter(|c| c.interface == "http"));
        }
    })
    .expect("log reads");
    calls
}

fn log_bytes(audit: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(audit).expect("audit dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            bytes.extend(std::fs::read(&path).expect("read"));
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn an_allowed_call_enriches_with_the_secret_reaching_only_the_server_and_replays_offline() {
    let mut server = AiServer::start();
    let (_pack, audit, findings) = enrich_run(&server.base_url("ok"), &server.origin(), 3);

    assert_eq!(findings.len(), 3, "every finding is emitted");
    for f in &findings {
        match enrichment(f) {
            EnrichmentResult::Enriched {
                summary,
                techniques,
                priority,
                source,
            } => {
                assert_eq!(summary, SUMMARY);
                assert_eq!(techniques, &["T1059.001", "T1027"]);
                assert_eq!(priority, "high");
                assert_eq!(source, "test-model");
            }
            other => panic!("not enriched: {other:?}"),
        }
    }
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].path, "/ok/v1/chat/completions");
    assert_eq!(
        requests[0].header("authorization"),
        Some(format!("Bearer {SECRET}").as_str()),
        "the host injects the secret"
    );
    assert!(String::from_utf8_lossy(&requests[0].body).contains("\"model\":\"test-model\""));

    // The log has the request and response, the secret's name, never its value.
    let calls = http_calls(&audit);
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].status, CallStatus::Allowed);
    assert_eq!(calls[0].args["method"], "POST");
    assert_eq!(calls[0].result["ok"]["status"], 200);
    assert_eq!(
        calls[0].result["ok"]["host_headers"][0][1],
        "Bearer ${AI_API_KEY}"
    );
    assert!(calls[0].result["ok"]["latency_ms"].is_u64());
    assert!(
        !contains(&log_bytes(&audit), SECRET),
        "secret in the audit log"
    );

    // `vigil audit stats` says what became of the findings it was given.
    let stats = vigil::audit::query::stats(&audit).expect("stats");
    let ai = &stats["t/ai"];
    assert_eq!((ai.invocations, ai.enriched, ai.unavailable), (3, 3, 0));

    // Replay needs neither the server nor the secret.
    server.stop();
    let engine = vigil::load::engine::build_engine().expect("engine");
    let replayed = replay(&engine, &audit, &Selection::default()).expect("replay");
    let enrichments: Vec<_> = replayed.iter().filter(|r| r.plugin == "t/ai").collect();
    assert_eq!(enrichments.len(), 3, "{replayed:?}");
    for r in &replayed {
        assert_eq!(r.verdict, Verdict::Identical, "{r:?}");
    }
}

#[test]
fn answers_in_fences_in_prose_or_with_synonym_keys_enrich_every_finding() {
    let server = AiServer::start();
    for (mode, priority) in [
        ("fenced", "high"),
        ("prose", "high"),
        ("synonyms", "immediate"),
    ] {
        let (_pack, _audit, findings) = enrich_run(&server.base_url(mode), &server.origin(), 2);
        assert_eq!(findings.len(), 2, "{mode}");
        for f in &findings {
            match enrichment(f) {
                EnrichmentResult::Enriched {
                    summary,
                    techniques,
                    priority: got,
                    source,
                } => {
                    assert_eq!(summary, SUMMARY, "{mode}");
                    assert_eq!(techniques, &["T1059.001", "T1027"], "{mode}");
                    assert_eq!(got, priority, "{mode}");
                    assert_eq!(source, "test-model", "{mode}");
                }
                other => panic!("{mode}: not enriched: {other:?}"),
            }
        }
    }
    assert_eq!(server.requests().len(), 6);
}

#[test]
fn a_server_echoing_the_secret_cannot_leak_it_to_the_guest_or_the_log() {
    let server = AiServer::start();
    let (_pack, audit, findings) = enrich_run(&server.base_url("echo-auth"), &server.origin(), 1);
    match enrichment(&findings[0]) {
        EnrichmentResult::Enriched { summary, .. } => {
            assert_eq!(
                summary, "the request said: Bearer [secret:AI_API_KEY]",
                "the guest saw the masked value"
            );
        }
        other => panic!("not enriched: {other:?}"),
    }
    assert!(!contains(&log_bytes(&audit), SECRET));
}

#[test]
fn origins_outside_the_grant_are_denied_directly_and_by_redirect() {
    let granted = AiServer::start();
    let other = AiServer::start();

    // Directly: base_url on a port the grant does not name.
    let (_pack, audit, findings) = enrich_run(&other.base_url("ok"), &granted.origin(), 2);
    assert_eq!(findings.len(), 2, "denied enrichment never drops a finding");
    let reason = unavailable_reason(&findings[0]);
    assert!(reason.contains("access denied"), "{reason}");
    assert!(
        reason.contains(&format!("— host: origin {} is not granted", other.origin())),
        "the reason names the rule: {reason}"
    );
    let calls = http_calls(&audit);
    assert_eq!(calls[0].status, CallStatus::Denied);
    let detail = calls[0].detail.as_deref().unwrap_or_default();
    assert!(detail.contains("is not granted"), "{detail}");

    // By redirect: the granted server sends the client to the other one.
    granted.redirect_to(&format!("{}/ok/v1/chat/completions", other.origin()));
    let (_pack, audit, findings) = enrich_run(&granted.base_url("redirect"), &granted.origin(), 1);
    let reason = unavailable_reason(&findings[0]);
    assert!(reason.contains("access denied"), "{reason}");
    assert!(
        reason.contains(&format!(
            "— host: redirect from {}/redirect/v1/chat/completions to {}/ok/v1/chat/completions: \
             origin {} is not granted",
            granted.origin(),
            other.origin(),
            other.origin()
        )),
        "the reason names the rule: {reason}"
    );
    let detail = http_calls(&audit)[0].detail.clone().unwrap_or_default();
    assert!(
        detail.contains("redirect") && detail.contains("not granted"),
        "{detail}"
    );
    assert!(
        other.requests().is_empty(),
        "nothing reached the other origin"
    );
    assert_eq!(granted.requests().len(), 1);
}

#[test]
fn a_name_resolving_to_loopback_is_refused_unless_the_address_itself_is_granted() {
    let server = AiServer::start();
    let port = server.addr.rsplit(':').next().expect("port");
    let by_name = format!("http://localhost:{port}");
    let (_pack, audit, findings) = enrich_run(&format!("{by_name}/ok/v1"), &by_name, 1);
    assert!(unavailable_reason(&findings[0]).contains("access denied"));
    let detail = http_calls(&audit)[0].detail.clone().unwrap_or_default();
    assert!(detail.contains("loopback"), "{detail}");
    assert!(server.requests().is_empty(), "no connection was made");
}

#[test]
fn failures_of_the_service_leave_findings_unenriched_with_the_reason() {
    let server = AiServer::start();
    for (mode, says) in [
        ("huge", "response larger than the grant allows"),
        ("error", "HTTP 500"),
        ("malformed", "no JSON object"),
    ] {
        let (_pack, _audit, findings) = enrich_run(&server.base_url(mode), &server.origin(), 1);
        assert_eq!(findings.len(), 1, "{mode}");
        let reason = unavailable_reason(&findings[0]);
        assert!(reason.contains(says), "{mode}: {reason}");
    }
}

#[test]
fn time_in_a_slow_request_counts_against_the_plugin_deadline() {
    let server = AiServer::start();
    // The grant allows 5 s, the plugin's deadline is 1.5 s, the server takes 3 s.
    let (_pack, audit, findings) = enrich_run(&server.base_url("slow"), &server.origin(), 1);
    // The guest gets `timeout` when its deadline is used up (and may have
    // no time left to say so: either reason is the deadline's).
    let reason = unavailable_reason(&findings[0]);
    assert!(
        reason.contains("did not answer in time") || reason.contains("deadline"),
        "{reason}"
    );
    let call = &http_calls(&audit)[0];
    assert_eq!(call.result["error"], "timeout");
    let detail = call.detail.as_deref().unwrap_or_default();
    assert!(detail.contains("plugin's deadline"), "{detail}");
}

#[test]
fn a_rate_limit_refuses_requests_past_the_grant() {
    let server = AiServer::start();
    let pack = pack(&server.base_url("ok"));
    let audit = pack.dir.path().join("audit");
    let policy = policy(&pack, &server.origin(), "")
        .replace("requests_per_minute = 1000", "requests_per_minute = 2");
    let findings = parse_findings(&pack.audited_run(&policy, &audit, &events(4)));
    let enriched = findings
        .iter()
        .filter(|f| matches!(enrichment(f), EnrichmentResult::Enriched { .. }))
        .count();
    assert_eq!(enriched, 2);
    assert_eq!(server.requests().len(), 2);
    let limited = http_calls(&audit)
        .iter()
        .filter(|c| c.result["error"] == "rate-limited")
        .count();
    assert_eq!(limited, 2);
}

/// Load [`pack`] under `policy` and run it audited (batches of 1) on
/// events that `feed` writes into a pipe; `feed` also gets how many
/// findings have been emitted so far. Returns the findings.
fn piped_run(
    pack: &TestPack,
    policy: &str,
    audit: &Path,
    feed: impl FnOnce(&mut PipeWriter, &dyn Fn() -> usize),
) -> Vec<FindingRecord> {
    let (runtime, generation) = pack.load(policy).expect("pack loads");
    let mut auditor = Auditor::open(&runtime.policy.audit, audit).expect("audit opens");
    vigil::pipeline::record::pack_load(&mut auditor, &generation).expect("recorded");
    let (reader, mut writer) = std::io::pipe().expect("pipe");
    let output = Shared::default();
    // Complete lines only: a finding is written in pieces.
    let emitted = || {
        output
            .0
            .lock()
            .expect("lock")
            .iter()
            .filter(|b| **b == b'\n')
            .count()
    };
    std::thread::scope(|scope| {
        let mut out = output.clone();
        let auditor = &mut auditor;
        let generation = &generation;
        let run = scope.spawn(move || {
            vigil::pipeline::dispatch::run_audited(
                generation,
                BatchReader::new(std::io::BufReader::new(reader)),
                "pipe",
                1,
                &mut out,
                Some(auditor),
            )
            .expect("run")
        });
        feed(&mut writer, &emitted);
        drop(writer);
        run.join().expect("run thread");
    });
    auditor.close("test done").expect("closes");
    parse_findings(&output.0.lock().expect("lock"))
}

#[test]
fn a_429_with_retry_after_stops_requests_for_the_whole_enricher_until_then() {
    let server = AiServer::start();
    let pack = pack(&server.base_url("ratelimited"));
    let audit = pack.dir.path().join("audit");
    let mut after_the_429 = Duration::ZERO;
    let findings = piped_run(
        &pack,
        &policy(&pack, &server.origin(), ""),
        &audit,
        |feed, emitted| {
            // The first finding alone: requests already in flight when a
            // 429 arrives (one per enrichment worker at most) are not
            // recalled.
            feed.write_all(events(1).as_bytes()).expect("feed");
            wait_for("the first finding", || emitted() == 1);
            let started = Instant::now();
            feed.write_all(events(19).as_bytes()).expect("feed");
            wait_for("the other findings", || emitted() == 20);
            after_the_429 = started.elapsed();
        },
    );

    assert_eq!(findings.len(), 20, "every finding is emitted");
    assert_eq!(
        server.requests().len(),
        1,
        "one request, then none until the Retry-After"
    );
    assert!(
        after_the_429 < Duration::from_secs(15),
        "refused findings do not wait out the 30 s: {after_the_429:?}"
    );
    let first = unavailable_reason(&findings[0]);
    assert!(first.contains("HTTP 429"), "{first}");
    let origin = server.origin();
    for f in &findings[1..] {
        let reason = unavailable_reason(f);
        // Throttled calls do not count towards quarantine (3 by default).
        assert!(!reason.starts_with("quarantined"), "{reason}");
        assert!(
            reason.contains("rate-limited")
                && reason.contains("— host: rate-limited by the service until ")
                && reason.contains(&format!("(Retry-After of 30 s on a 429 from {origin})")),
            "{reason}"
        );
    }

    // The log: the 429 the service gave, then 19 refusals that say until when.
    let calls = http_calls(&audit);
    assert_eq!(calls.len(), 20);
    assert_eq!(calls[0].status, CallStatus::Allowed);
    assert_eq!(calls[0].result["ok"]["status"], 429);
    for call in &calls[1..] {
        assert_eq!(call.status, CallStatus::Failed);
        assert_eq!(call.result["error"], "rate-limited");
        let detail = call.detail.as_deref().unwrap_or_default();
        assert!(
            detail.starts_with("rate-limited by the service until ")
                && detail.ends_with(&format!(
                    "(Retry-After of 30 s on a 429 from {origin}); not sent"
                )),
            "{detail}"
        );
    }

    // The refusals replay from the log like any other answer.
    let engine = vigil::load::engine::build_engine().expect("engine");
    let replayed = replay(&engine, &audit, &Selection::default()).expect("replay");
    for r in &replayed {
        assert_eq!(r.verdict, Verdict::Identical, "{r:?}");
    }
}

#[test]
fn a_503_without_retry_after_backs_off_exponentially_for_the_whole_enricher() {
    let server = AiServer::start();
    let pack = pack(&server.base_url("overloaded"));
    let audit = pack.dir.path().join("audit");
    let findings = piped_run(
        &pack,
        &policy(&pack, &server.origin(), ""),
        &audit,
        |feed, emitted| {
            let mut one_more = |n: usize| {
                feed.write_all(events(1).as_bytes()).expect("feed");
                wait_for("the finding", || emitted() == n);
            };
            one_more(1); // sent: 503, backoff 1 s ± 20%
            one_more(2); // refused
            std::thread::sleep(Duration::from_millis(1300));
            one_more(3); // sent again: 503, backoff 2 s ± 20%
            one_more(4); // refused
        },
    );
    assert_eq!(findings.len(), 4);
    assert_eq!(server.requests().len(), 2);
    let reasons: Vec<String> = findings.iter().map(unavailable_reason).collect();
    assert!(reasons[0].contains("HTTP 503"), "{reasons:?}");
    assert!(reasons[2].contains("HTTP 503"), "{reasons:?}");
    for (reason, after) in [
        (&reasons[1], "after 1 429/503"),
        (&reasons[3], "after 2 429/503"),
    ] {
        assert!(
            reason.contains("— host: rate-limited by the service until ")
                && reason.contains("(no Retry-After: backoff of ")
                && reason.contains(after),
            "{reason}"
        );
    }
}

/// `Write` into a shared buffer the test can read while the run goes on.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Wait (bounded) until `done` holds; panics with `what` after 20 s.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn revoking_http_mid_run_denies_the_next_call_within_a_second_and_persists() {
    let server = AiServer::start();
    let pack = pack(&server.base_url("ok"));
    let audit = pack.dir.path().join("audit");
    let (runtime, generation) = pack
        .load(&policy(&pack, &server.origin(), ""))
        .expect("pack loads");
    let file = pack.state_dir.join(revocation::FILE);
    let _watcher = revocation::watch(&file, runtime.revocations.clone()).expect("watch");
    let mut auditor = Auditor::open(&runtime.policy.audit, &audit).expect("audit opens");
    vigil::pipeline::record::pack_load(&mut auditor, &generation).expect("recorded");

    let (reader, mut feed) = std::io::pipe().expect("pipe");
    let output = Shared::default();
    let lines = || parse_findings(&output.0.lock().expect("lock"));
    let stats = std::thread::scope(|scope| {
        let mut out = output.clone();
        let auditor = &mut auditor;
        let generation = &generation;
        let run = scope.spawn(move || {
            vigil::pipeline::dispatch::run_audited(
                generation,
                BatchReader::new(std::io::BufReader::new(reader)),
                "pipe",
                1,
                &mut out,
                Some(auditor),
            )
            .expect("run")
        });
        let event = |n: usize| format!("{{\"n\":{n}}}\n");
        feed.write_all(event(1).as_bytes()).expect("feed");
        wait_for("the first finding", || lines().len() == 1);
        assert!(matches!(
            enrichment(&lines()[0]),
            EnrichmentResult::Enriched { .. }
        ));

        // What `vigil revoke ai --capability http` does.
        let revoked_at = Instant::now();
        let applied = revocation::apply(
            &pack.state_dir,
            &runtime.policy.audit,
            &pack.state_dir.join("audit"),
            change(
                Action::Revoke,
                "alice",
                "vendor incident",
                "2026-11-22T12:00:00Z",
            ),
        )
        .expect("revokes");
        assert_eq!(
            applied.recorded,
            Recorded::ByRunningHost,
            "the running host records it"
        );
        wait_for("the revocation to apply", || {
            runtime
                .revocations
                .check("t", "ai", Capability::Http)
                .is_some()
        });
        let took = revoked_at.elapsed();
        assert!(took < Duration::from_secs(1), "applied after {took:?}");

        feed.write_all(event(2).as_bytes()).expect("feed");
        drop(feed);
        run.join().expect("run thread")
    });
    auditor.close("test done").expect("closes");

    let findings = lines();
    assert_eq!(
        stats.findings, 2,
        "detection continued after the revocation"
    );
    assert_eq!(findings.len(), 2);
    let reason = unavailable_reason(&findings[1]);
    assert!(reason.contains("access denied"), "{reason}");
    assert!(
        reason.contains("— host: revoked by alice"),
        "the reason says who revoked: {reason}"
    );
    assert_eq!(
        server.requests().len(),
        1,
        "no request after the revocation"
    );

    // The log: the revocation (who, why, when: the command's own) before
    // the denied call, which says why; once.
    let mut order = Vec::new();
    query::for_each(&audit, |entry, _| match entry.record {
        Record::Lifecycle(Lifecycle::GrantChange {
            action,
            by,
            reason,
            requested_at,
            ..
        }) => order.push(format!("{action} by {by} at {requested_at}: {reason}")),
        Record::Enrichment(inv) => {
            let call = &inv.host_calls[0];
            order.push(format!(
                "{:?} {}",
                call.status,
                call.detail.clone().unwrap_or_default()
            ));
        }
        _ => {}
    })
    .expect("log reads");
    assert_eq!(order.len(), 3, "{order:?}");
    assert_eq!(order[0], "Allowed ");
    assert_eq!(
        order[1],
        "revoke by alice at 2026-11-22T12:00:00Z: vendor incident"
    );
    assert!(order[2].starts_with("Denied revoked by alice"), "{order:?}");

    assert!(
        !pack.state_dir.join("audit").exists(),
        "the command wrote no record of its own"
    );

    // A restarted host starts with the revocation in force, and with
    // nothing left to record.
    let restarted = pack.runtime(&policy(&pack, &server.origin(), ""));
    assert!(
        restarted
            .revocations
            .check("t", "ai", Capability::Http)
            .is_some()
    );
    let list = RevocationList::load(&file).expect("list");
    assert!(list.pending.is_empty(), "{list:?}");
}

/// A request as `vigil revoke`/`restore` makes it, for `ai`'s `http`.
fn change(action: Action, by: &str, reason: &str, at: &str) -> ChangeRequest {
    ChangeRequest {
        action,
        plugin: "ai".into(),
        capability: Some(Capability::Http),
        reason: reason.into(),
        by: by.into(),
        at: at.parse().expect("a time"),
    }
}

/// `action by who at when: reason` of every grant-change record.
fn grant_changes(audit: &Path) -> Vec<String> {
    let mut out = Vec::new();
    query::for_each(audit, |entry, _| {
        if let Record::Lifecycle(Lifecycle::GrantChange {
            action,
            by,
            reason,
            requested_at,
            ..
        }) = entry.record
        {
            out.push(format!("{action} by {by} at {requested_at}: {reason}"));
        }
    })
    .expect("log reads");
    out
}

fn quarantine_records(audit: &Path) -> usize {
    let mut n = 0;
    query::for_each(audit, |entry, _| {
        n += usize::from(matches!(
            entry.record,
            Record::Lifecycle(Lifecycle::Quarantine { .. })
        ));
    })
    .expect("log reads");
    n
}

#[test]
fn an_enricher_failing_ten_times_on_a_denied_http_call_is_never_quarantined() {
    let granted = AiServer::start();
    let other = AiServer::start();
    let (_pack, audit, findings) = enrich_run(&other.base_url("ok"), &granted.origin(), 10);
    assert_eq!(findings.len(), 10);
    for f in &findings {
        let reason = unavailable_reason(f);
        assert!(reason.contains("access denied"), "{reason}");
        assert!(!reason.contains("quarantined"), "{reason}");
    }
    assert_eq!(quarantine_records(&audit), 0);
}

#[test]
fn a_restore_on_a_running_host_brings_enrichment_back_and_each_change_is_recorded_once_with_its_own_fields()
 {
    let server = AiServer::start();
    let pack = pack(&server.base_url("ok"));
    let audit = pack.dir.path().join("audit");
    let policy = policy(&pack, &server.origin(), "");
    // Revoked while no host runs: the command records it itself.
    let applied = revocation::apply(
        &pack.state_dir,
        &Default::default(),
        &audit,
        change(
            Action::Revoke,
            "alice",
            "vendor incident",
            "2026-11-22T12:00:00Z",
        ),
    )
    .expect("revokes");
    assert_eq!(applied.recorded, Recorded::Now(audit.clone()));

    let (runtime, generation) = pack.load(&policy).expect("pack loads");
    let file = pack.state_dir.join(revocation::FILE);
    let _watcher = revocation::watch(&file, runtime.revocations.clone()).expect("watch");
    let mut auditor = Auditor::open(&runtime.policy.audit, &audit).expect("audit opens");
    vigil::pipeline::record::pack_load(&mut auditor, &generation).expect("recorded");
    let (reader, mut feed) = std::io::pipe().expect("pipe");
    let output = Shared::default();
    let lines = || parse_findings(&output.0.lock().expect("lock"));
    let stats = std::thread::scope(|scope| {
        let mut out = output.clone();
        let auditor = &mut auditor;
        let generation = &generation;
        let run = scope.spawn(move || {
            vigil::pipeline::dispatch::run_audited(
                generation,
                BatchReader::new(std::io::BufReader::new(reader)),
                "pipe",
                1,
                &mut out,
                Some(auditor),
            )
            .expect("run")
        });
        let event = |n: usize| format!("{{\"n\":{n}}}\n");
        // Five denials in a row, more than `quarantine_after`.
        for n in 1..=5 {
            feed.write_all(event(n).as_bytes()).expect("feed");
            wait_for("a finding", || lines().len() == n);
            let reason = unavailable_reason(&lines()[n - 1]);
            assert!(reason.contains("access denied"), "{reason}");
        }
        let applied = revocation::apply(
            &pack.state_dir,
            &runtime.policy.audit,
            &audit,
            change(
                Action::Restore,
                "bob",
                "vendor fixed",
                "2026-11-22T13:00:00Z",
            ),
        )
        .expect("restores");
        assert_eq!(applied.recorded, Recorded::ByRunningHost);
        wait_for("the restore to apply", || {
            (runtime.revocations)
                .check("t", "ai", Capability::Http)
                .is_none()
        });
        feed.write_all(event(6).as_bytes()).expect("feed");
        wait_for("the sixth finding", || lines().len() == 6);
        drop(feed);
        run.join().expect("run thread")
    });
    auditor.close("test done").expect("closes");

    assert!(
        matches!(enrichment(&lines()[5]), EnrichmentResult::Enriched { .. }),
        "{:?}",
        lines()[5]
    );
    assert!(stats.quarantined.is_empty(), "{:?}", stats.quarantined);
    assert!(generation.enrichers[0].quarantine().is_none());
    assert_eq!(quarantine_records(&audit), 0);
    assert_eq!(
        grant_changes(&audit),
        [
            "revoke by alice at 2026-11-22T12:00:00Z: vendor incident",
            "restore by bob at 2026-11-22T13:00:00Z: vendor fixed",
        ]
    );
    // The restore is recorded before the enrichment it allowed.
    let mut order = Vec::new();
    query::for_each(&audit, |entry, _| match entry.record {
        Record::Lifecycle(Lifecycle::GrantChange { action, .. }) => order.push(action.to_string()),
        Record::Enrichment(inv) => order.push(format!("{:?}", inv.outcome)),
        _ => {}
    })
    .expect("log reads");
    assert_eq!(
        order,
        [
            "revoke", "Error", "Error", "Error", "Error", "Error", "restore", "Ok"
        ]
    );
    vigil::audit::verify::verify(&audit).expect("the log verifies");
}

/// Detection never waits on enrichment: with a service slower than
/// `[enrichment] wait_ms`, findings leave without their enrichment when
/// the wait is over, and the enrichment is still recorded when it ends.
#[test]
fn a_finding_waits_for_a_slow_enricher_only_until_wait_ms_then_leaves_saying_so() {
    let server = AiServer::start();
    let pack = pack(&server.base_url("slow"));
    let audit = pack.dir.path().join("audit");
    let policy = policy(&pack, &server.origin(), "[enrichment]\nwait_ms = 300\n");
    let out = pack.audited_run(&policy, &audit, &events(2));
    let findings = parse_findings(&out);
    assert_eq!(findings.len(), 2, "every finding is emitted");
    for f in &findings {
        let reason = unavailable_reason(f);
        assert!(reason.contains("did not finish within 300 ms"), "{reason}");
    }
    // The late enrichments are in the log all the same (the slow service
    // outlasts the enricher's 1.5 s deadline, so they end in a timeout).
    let mut late = 0;
    query::for_each(&audit, |entry, _| {
        if let Record::Enrichment(inv) = entry.record {
            assert!(inv.error.is_some(), "{inv:?}");
            late += 1;
        }
    })
    .expect("log reads");
    assert_eq!(late, 2);
}
