//! Dispatch cost benchmarks (`cargo bench -p vigil`).
//!
//! On the starter pack's Sysmon process-creation events (~1.9 KB, ~25
//! fields, nested), it prints:
//! - `boundary/noop/*`: per-event cost of a detector that declares no fields
//!   and does nothing (instance, `init`, projection, transfer, SDK decode);
//! - `boundary/fields/*`: the same with a detector declaring and reading
//!   `Image`, `CommandLine` and `User` and testing a substring;
//! - `boundary/{noop,fields}-whole/*`: the same without projection (whole
//!   events cross the boundary), to show what projection saves;
//! - each as `batched` (256 events per call, fresh instance per call, as the
//!   dispatcher runs), `unbatched` (one event per call on a warm instance)
//!   and `unbatched-fresh` (one event per call, fresh instance each time);
//! - `instance/fresh`: a new store and instance from the pre-linked component;
//! - `host/encode`: the host's JSON -> event-encoding cost per event;
//! - `event_access/*`: native comparison of the alternatives for reading
//!   three fields from one event (the encoding Vigil uses, parsing JSON text
//!   into borrowed fields, parsing into an owned tree with one allocation
//!   per field);
//! - `starter_pack/throughput`: the sample events (x10, 10,700 events)
//!   through the starter pack;
//! - `starter_pack/throughput-audited`: the same with the audit log on (full
//!   inputs), followed by one line with the log's records/s and bytes/event.
//!
//! - `preinit/ioc_50k/{snapshot,per-instance}`: a fresh instance and its
//!   first `detect` (one event) for `ioc-match` with 50,000 indicators read
//!   from a file in `init`: started from the load-time snapshot, and with
//!   `preinit = false` (init on every instance, as before); the load time
//!   of each is printed once.
//!
//! Throughput is reported per event ("elem/s"); divide to get ns/event.

// `criterion_group!` generates an undocumented `pub fn`; a bench target has
// no public API to document.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use vigil::audit::Auditor;
use vigil::load::pack::PackSource;
use vigil::load::policy::{AuditConfig, Policy};
use vigil::load::runtime::Runtime;
use vigil::pipeline::input::BatchReader;

const BATCH: usize = 256;

fn sysmon_process_events() -> Vec<&'static [u8]> {
    vigil::artifacts::starter_events()
        .split(|b| *b == b'\n')
        .filter(|l| l.windows(12).any(|w| w == b"\"EventID\":1,"))
        .collect()
}

fn batch_of(lines: &[&[u8]]) -> vigil_event::Batch {
    let mut batch = vigil_event::Batch::new();
    for (i, line) in lines.iter().enumerate() {
        batch
            .push_json(i as u64 + 1, line)
            .expect("sample events are valid");
    }
    batch
}

/// A one-plugin pack running `bench-probe` in `mode`.
fn probe(
    mode: &str,
) -> (
    tempfile::TempDir,
    std::sync::Arc<vigil::load::pack::Generation>,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = vigil_test_artifacts::component_path("bench-probe")
        .expect("bench-probe is built by vigil-test-artifacts");
    std::fs::copy(wasm, dir.path().join("probe.wasm")).expect("copy");
    std::fs::write(
        dir.path().join("pack.toml"),
        format!("name = \"bench\"\nversion = \"1\"\n[[plugins]]\nid = \"probe\"\ncomponent = \"probe.wasm\"\nworld = \"detector\"\nconfig = {{ mode = \"{mode}\" }}\n"),
    )
    .expect("write");
    let runtime = Runtime::new(Policy::default(), dir.path().join("state")).expect("engine");
    let generation = runtime
        .load(PackSource::Dir(dir.path().to_owned()))
        .expect("loads");
    (dir, generation)
}

fn boundary(c: &mut Criterion) {
    let events = sysmon_process_events();
    assert!(
        events.len() >= BATCH,
        "need {BATCH} Sysmon events, have {}",
        events.len()
    );
    let big = batch_of(&events[..BATCH]);
    let single = batch_of(&events[..1]);
    let mut group = c.benchmark_group("boundary");
    for mode in ["noop", "fields", "noop-whole", "fields-whole"] {
        let (_dir, generation) = probe(mode);
        let plugin = &generation.detectors[0];
        assert_eq!(plugin.detect(&big).result.map(|f| f.len()), Ok(0));
        // Batched: one fresh instance per batch of 256, as the dispatcher runs.
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function(format!("{mode}/batched"), |b| {
            b.iter(|| plugin.detect(&big))
        });
        // Unbatched: one event per call on a warm instance.
        let mut warm = plugin.warm_instance().expect("instantiates");
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("{mode}/unbatched"), |b| {
            b.iter(|| warm.detect(&single).expect("detects"))
        });
        // One event per call, each on a fresh instance: the isolation price.
        group.bench_function(format!("{mode}/unbatched-fresh"), |b| {
            b.iter(|| plugin.detect(&single))
        });
    }
    group.finish();

    let (_dir, generation) = probe("noop");
    let plugin = &generation.detectors[0];
    c.bench_function("instance/fresh", |b| {
        b.iter(|| plugin.instantiate_only().expect("instantiates"))
    });
}

fn host_encode(c: &mut Criterion) {
    let events = sysmon_process_events();
    let mut group = c.benchmark_group("host");
    group.throughput(Throughput::Elements(events.len() as u64));
    let mut out = Vec::with_capacity(1 << 20);
    group.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            for e in &events {
                vigil_event::encode_json(e, &mut out).expect("valid");
            }
        })
    });
    let encoded = batch_of(&events);
    let projection = vigil_event::Projection::new([
        "Event.EventData.Image",
        "Event.EventData.CommandLine",
        "Event.EventData.User",
    ]);
    let mut projected = vigil_event::Batch::new();
    group.bench_function("project_three_fields", |b| {
        b.iter(|| encoded.project_into(&projection, &mut projected))
    });
    group.finish();
}

fn event_access(c: &mut Criterion) {
    #[derive(serde::Deserialize)]
    struct Borrowed<'a> {
        #[serde(rename = "Event", borrow)]
        event: BorrowedEvent<'a>,
    }
    #[derive(serde::Deserialize)]
    struct BorrowedEvent<'a> {
        #[serde(rename = "EventData", borrow)]
        data: BorrowedData<'a>,
    }
    #[derive(serde::Deserialize)]
    struct BorrowedData<'a> {
        #[serde(rename = "Image", borrow)]
        image: std::borrow::Cow<'a, str>,
        #[serde(rename = "CommandLine", borrow)]
        command_line: std::borrow::Cow<'a, str>,
        #[serde(rename = "User", borrow)]
        user: std::borrow::Cow<'a, str>,
    }

    let events = sysmon_process_events();
    let encoded: Vec<Vec<u8>> = events
        .iter()
        .map(|e| {
            let mut v = Vec::new();
            vigil_event::encode_json(e, &mut v).expect("valid");
            v
        })
        .collect();
    let mut group = c.benchmark_group("event_access");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("vigil_encoding", |b| {
        b.iter(|| {
            let mut hits = 0;
            for bytes in &encoded {
                let e = vigil_event::EventRef::new(bytes).expect("event");
                let cmd = e.str("Event.EventData.CommandLine").unwrap_or("");
                if cmd.contains("-enc")
                    && e.str("Event.EventData.Image").is_some()
                    && e.str("Event.EventData.User").is_some()
                {
                    hits += 1;
                }
            }
            hits
        })
    });
    group.bench_function("json_text_borrowed_fields", |b| {
        b.iter(|| {
            let mut hits = 0;
            for line in &events {
                let e: Borrowed<'_> = serde_json::from_slice(line).expect("valid");
                if e.event.data.command_line.contains("-enc")
                    && !e.event.data.image.is_empty()
                    && !e.event.data.user.is_empty()
                {
                    hits += 1;
                }
            }
            hits
        })
    });
    group.bench_function("owned_tree_one_alloc_per_field", |b| {
        b.iter(|| {
            let mut hits = 0;
            for line in &events {
                let v: serde_json::Value = serde_json::from_slice(line).expect("valid");
                let d = &v["Event"]["EventData"];
                if d["CommandLine"].as_str().unwrap_or("").contains("-enc")
                    && d["Image"].is_string()
                    && d["User"].is_string()
                {
                    hits += 1;
                }
            }
            hits
        })
    });
    group.finish();
}

/// The starter events repeated this many times: a run long enough that the
/// fixed costs (thread start, the closing fdatasync) do not dominate.
const STARTER_REPEAT: usize = 10;

fn starter_pack(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = vigil::artifacts::starter_policy();
    let runtime = Runtime::new(policy, dir.path()).expect("engine");
    let events: &'static [u8] = vigil::artifacts::starter_events()
        .repeat(STARTER_REPEAT)
        .leak();
    let count = events
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    let mut group = c.benchmark_group("starter_pack");
    group.throughput(Throughput::Elements(count as u64));
    group.sample_size(10);
    group.bench_function("throughput", |b| {
        b.iter_batched(
            // A fresh generation and empty state per run, so every run does the same work.
            || {
                let state = tempfile::tempdir().expect("tempdir");
                let generation = runtime
                    .load_with_state_dir(
                        vigil::artifacts::starter_pack().expect("built with the starter pack"),
                        state.path(),
                    )
                    .expect("loads");
                (state, generation)
            },
            |(_state, generation)| {
                vigil::pipeline::dispatch::run(
                    &generation,
                    events,
                    "events.jsonl",
                    BATCH,
                    &mut std::io::sink(),
                )
                .expect("runs")
            },
            BatchSize::PerIteration,
        )
    });
    // The same with the audit log on (full inputs, default group commit),
    // closing the log (final fdatasync) inside the measured time.
    group.bench_function("throughput-audited", |b| {
        b.iter_batched(
            || {
                let state = tempfile::tempdir().expect("tempdir");
                let (generation, auditor) = audited_starter(&runtime, state.path());
                (state, generation, auditor)
            },
            |(_state, generation, auditor)| run_and_close(&generation, auditor, events),
            BatchSize::PerIteration,
        )
    });
    group.finish();
    report_audit_size(events, count);
}

/// The starter pack loaded with state in `state`, and an audit log in
/// `state/audit` (default settings) that has recorded the load.
fn audited_starter(
    runtime: &Runtime,
    state: &std::path::Path,
) -> (std::sync::Arc<vigil::load::pack::Generation>, Auditor) {
    let generation = runtime
        .load_with_state_dir(
            vigil::artifacts::starter_pack().expect("built with the starter pack"),
            state,
        )
        .expect("loads");
    let mut auditor =
        Auditor::open(&AuditConfig::default(), &state.join("audit")).expect("opens the audit log");
    vigil::pipeline::record::pack_load(&mut auditor, &generation).expect("records the load");
    (generation, auditor)
}

/// One audited run over `events`, closing the log (final fdatasync).
fn run_and_close(
    generation: &std::sync::Arc<vigil::load::pack::Generation>,
    mut auditor: Auditor,
    events: &'static [u8],
) -> vigil::pipeline::dispatch::RunStats {
    let stats = vigil::pipeline::dispatch::run_audited(
        generation,
        BatchReader::new(events),
        "events.jsonl",
        BATCH,
        &mut std::io::sink(),
        Some(&mut auditor),
    )
    .expect("runs");
    auditor.close("bench").expect("closes");
    stats
}

/// Audit records, records/s and bytes per event for one audited run,
/// printed beside criterion's numbers (the issue asks for both).
fn report_audit_size(events: &'static [u8], count: usize) {
    let state = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(vigil::artifacts::starter_policy(), state.path()).expect("engine");
    let (generation, auditor) = audited_starter(&runtime, state.path());
    let dir = state.path().join("audit");
    let started = std::time::Instant::now();
    run_and_close(&generation, auditor, events);
    let elapsed = started.elapsed().as_secs_f64();
    let (mut bytes, mut records) = (0u64, 0u64);
    for entry in std::fs::read_dir(&dir).expect("audit dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            let text = std::fs::read(&path).expect("segment");
            bytes += text.len() as u64;
            records += text.iter().filter(|b| **b == b'\n').count() as u64;
        }
    }
    println!(
        "starter_pack/audit-size: {count} events -> {records} records, {bytes} bytes, \
         {:.0} bytes/event; one run: {:.0} records/s, {:.1} MB/s",
        bytes as f64 / count as f64,
        records as f64 / elapsed,
        bytes as f64 / elapsed / 1e6,
    );
}

/// `ioc-match` with a 50,000-line indicator file, loaded with `preinit`.
fn ioc_50k(
    preinit: bool,
) -> (
    tempfile::TempDir,
    std::sync::Arc<vigil::load::pack::Generation>,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = vigil::artifacts::component_path("ioc-match").expect("ioc-match is built");
    std::fs::copy(wasm, dir.path().join("ioc.wasm")).expect("copy");
    std::fs::create_dir_all(dir.path().join("intel")).expect("intel");
    let mut list = String::new();
    for i in 0..50_000u32 {
        match i % 3 {
            0 => list.push_str(&format!("host-{i}.bad-{}.example\n", i % 97)),
            1 => list.push_str(&format!("10.{}.{}.{}\n", i >> 16, (i >> 8) & 255, i & 255)),
            _ => list.push_str(&format!("{:064x}\n", u64::from(i) * 0x9e37_79b9_7f4a_7c15)),
        }
    }
    std::fs::write(dir.path().join("intel/iocs.txt"), list).expect("write list");
    std::fs::write(
        dir.path().join("pack.toml"),
        "name = \"bench\"\nversion = \"1\"\n[[plugins]]\nid = \"ioc\"\ncomponent = \"ioc.wasm\"\nworld = \"detector\"\ncapabilities = [\"files\"]\nconfig = { lists = [\"intel/iocs.txt\"] }\n",
    )
    .expect("write");
    let policy = Policy::parse(
        "bench.toml",
        &format!(
            "preinit = {preinit}\n[limits]\ndeadline_ms = 10000\nmemory_mb = 256\n[packs.bench.plugins.ioc]\ncapabilities = [\"files\"]\nfiles = {{ dirs = [\"intel/\"] }}\n"
        ),
    )
    .expect("policy");
    let runtime = Runtime::new(policy, dir.path().join("state")).expect("engine");
    let started = std::time::Instant::now();
    let generation = runtime
        .load(PackSource::Dir(dir.path().to_owned()))
        .expect("loads");
    println!(
        "preinit/ioc_50k: load with preinit = {preinit}: {:.1} ms ({})",
        started.elapsed().as_secs_f64() * 1e3,
        generation.detectors[0].init_mode().name()
    );
    (dir, generation)
}

fn preinit(c: &mut Criterion) {
    // A DNS query for the 3,000th indicator, so the lookup finds it.
    let event: &[u8] = br#"{"Event":{"EventData":{"QueryName":"x.host-3000.bad-90.example"}}}"#;
    let batch = batch_of(&[event]);
    let mut group = c.benchmark_group("preinit/ioc_50k");
    for (name, on) in [("snapshot", true), ("per-instance", false)] {
        let (_dir, generation) = ioc_50k(on);
        let plugin = &generation.detectors[0];
        assert_eq!(plugin.detect(&batch).result.map(|f| f.len()), Ok(1));
        group.bench_function(name, |b| b.iter(|| plugin.detect(&batch)));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = boundary, host_encode, event_access, starter_pack, preinit
}
criterion_main!(benches);
