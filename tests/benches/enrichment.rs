//! Does enrichment slow detection? The starter pack's three detectors over
//! the starter events x 50 (53,500 events, audit log on), run three ways in
//! one process on the same input: without an enricher; with `ai-enrich`
//! against a loopback chat-completions server answering in ~3 ms; and with
//! the service down (connections refused at once). Prints events/s (median
//! of `RUNS`) end to end and until the last event was through the
//! detectors, and what became of the findings.
//!
//! `cargo bench -p vigil-tests --bench enrichment`

use std::path::Path;
use std::time::Instant;

use vigil::audit::Auditor;
use vigil::load::pack::PackSource;
use vigil::load::policy::Policy;
use vigil::load::runtime::Runtime;
use vigil::pipeline::dispatch::{RunStats, run_audited};
use vigil::pipeline::input::BatchReader;
use vigil_tests::ai_server::AiServer;

const REPEAT: usize = 50;
const RUNS: usize = 3;

fn main() {
    let starter = Path::new(vigil::artifacts::STARTER_PACK_DIR);
    let events = std::fs::read_to_string(starter.join("events.jsonl"))
        .expect("starter events")
        .repeat(REPEAT);
    let server = AiServer::start();
    // A port nothing listens on: every request is refused at once.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let down = format!("http://127.0.0.1:{closed}");
    let cases: [(&str, Option<(String, String)>); 3] = [
        ("no enricher", None),
        (
            "ai-enrich, service ~3 ms",
            Some((server.base_url("latency"), server.origin())),
        ),
        ("ai-enrich, service down", Some((down.clone(), down))),
    ];
    let mut baseline = None;
    // `VIGIL_BENCH_CASE=down` (a substring of a case name) runs just that
    // case, e.g. under `perf record`.
    let only = std::env::var("VIGIL_BENCH_CASE").unwrap_or_default();
    for (name, enricher) in cases.iter().filter(|(name, _)| name.contains(&only)) {
        let mut runs: Vec<(f64, RunStats)> = (0..RUNS)
            .map(|_| run_once(starter, &events, enricher.as_ref()))
            .collect();
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (rate, stats) = &runs[RUNS / 2];
        let ratio = baseline.map_or(String::new(), |b: f64| {
            format!(", {:.2}x of no enricher", rate / b)
        });
        baseline.get_or_insert(*rate);
        let detection = stats.events as f64 / stats.detection.as_secs_f64();
        println!(
            "{name:<28} {rate:>9.0} events/s{ratio}; detection alone {detection:.0} events/s \
             ({} events, {} findings: {} enriched, {} not enriched)",
            stats.events, stats.findings, stats.enriched, stats.unenriched
        );
    }
}

/// One audited run in fresh directories; returns events/s and the stats.
fn run_once(starter: &Path, events: &str, enricher: Option<&(String, String)>) -> (f64, RunStats) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pack = dir.path().join("pack");
    copy_dir(starter, &pack);
    let mut policy =
        std::fs::read_to_string(starter.join("starter-policy.toml")).expect("starter policy");
    if let Some((base_url, origin)) = enricher {
        std::fs::copy(
            vigil_tests::component("ai-enrich"),
            pack.join("ai_enrich.wasm"),
        )
        .expect("copy enricher");
        let mut manifest = std::fs::read_to_string(pack.join("pack.toml")).expect("pack.toml");
        manifest.push_str(&format!(
            "\n[[plugins]]\nid = \"ai\"\ncomponent = \"ai_enrich.wasm\"\nworld = \"enricher\"\n\
             capabilities = [\"http\"]\nconfig = {{ base_url = \"{base_url}\", model = \"m\" }}\n"
        ));
        std::fs::write(pack.join("pack.toml"), manifest).expect("pack.toml");
        policy.push_str(&format!(
            "\n[packs.starter.plugins.ai]\ncapabilities = [\"http\"]\n\
             [packs.starter.plugins.ai.http]\norigins = [\"{origin}\"]\nmethods = [\"POST\"]\n\
             requests_per_minute = 1000000\n"
        ));
    }
    let policy = Policy::parse("bench-policy.toml", &policy).expect("policy");
    let runtime = Runtime::new(policy, dir.path().join("state")).expect("runtime");
    let generation = runtime.load(PackSource::Dir(pack)).expect("pack loads");
    let mut auditor =
        Auditor::open(&runtime.policy.audit, &dir.path().join("audit")).expect("audit");
    vigil::pipeline::record::pack_load(&mut auditor, &generation).expect("recorded");
    // `VIGIL_BENCH_AUDIT=off` runs without the audit log, to tell the
    // audit stage's share from the rest.
    let audited = std::env::var("VIGIL_BENCH_AUDIT").as_deref() != Ok("off");
    let mut out = Vec::new();
    let started = Instant::now();
    let stats = run_audited(
        &generation,
        BatchReader::new(events.as_bytes()),
        "bench.jsonl",
        runtime.policy.batch_size(),
        &mut out,
        audited.then_some(&mut auditor),
    )
    .expect("run");
    auditor.close("bench done").expect("close");
    let rate = stats.events as f64 / started.elapsed().as_secs_f64();
    (rate, stats)
}

fn copy_dir(from: &Path, to: &Path) {
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
