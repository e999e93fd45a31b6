//! The library host: generations swapped under a running pipeline, sources
//! acknowledged only once their batches are in the audit log, state stores
//! shared across generations.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use vigil::audit::record::Position;
use vigil::audit::resume;
use vigil::host::{Host, HostOptions};
use vigil::load::pack::{PackSet, PackSource};
use vigil::load::policy::Policy;
use vigil::pipeline::dispatch::Pipeline;
use vigil::pipeline::input::{MalformedLine, RawEvents};
use vigil::pipeline::sink::Memory;
use vigil::pipeline::source::{Acknowledge, DEFAULT_LINGER, EventSource, Lines};
use vigil_event::Batch;
use vigil_tests::{PluginSpec, TestPack, events};

/// The hostile test plugin imports these; echo uses none of them.
const ALL_CAPS: &str = r#""log", "config", "state", "clock""#;

const ECHO_POLICY: &str = r#"
[packs.t.plugins.old]
capabilities = ["log", "config", "state", "clock"]
state = { key_prefixes = ["x/"] }
[packs.t.plugins.new]
capabilities = ["log", "config", "state", "clock"]
state = { key_prefixes = ["x/"] }
"#;

fn echo(id: &str) -> TestPack {
    TestPack::new(&[PluginSpec {
        id,
        crate_name: "hostile",
        capabilities: ALL_CAPS,
        config: "mode = \"echo\"",
    }])
}

/// A source that runs `on_fill(batch number)` before reading each batch
/// and keeps every position it is acknowledged with.
struct Observed<'a> {
    inner: Lines<&'a [u8]>,
    fills: u64,
    on_fill: Box<dyn FnMut(u64) + 'a>,
    acks: Arc<Mutex<Vec<Position>>>,
    on_ack: Option<Box<dyn FnMut(Position) + Send>>,
}

impl<'a> Observed<'a> {
    fn new(jsonl: &'a str) -> Self {
        Observed {
            inner: Lines::new("observed.jsonl", jsonl.as_bytes()),
            fills: 0,
            on_fill: Box::new(|_| {}),
            acks: Arc::default(),
            on_ack: None,
        }
    }
}

impl EventSource for Observed<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn fill(
        &mut self,
        batch: &mut Batch,
        size: usize,
        linger: Duration,
        malformed: &mut Vec<MalformedLine>,
    ) -> std::io::Result<bool> {
        self.fills += 1;
        (self.on_fill)(self.fills);
        self.inner.fill(batch, size, linger, malformed)
    }

    fn position(&self) -> Position {
        self.inner.position()
    }

    fn take_raw(&mut self, spare: RawEvents) -> RawEvents {
        self.inner.take_raw(spare)
    }

    fn acknowledger(&mut self) -> Box<dyn Acknowledge> {
        let acks = self.acks.clone();
        let mut on_ack = self.on_ack.take().unwrap_or_else(|| Box::new(|_| {}));
        Box::new(move |through: Position| {
            on_ack(through);
            acks.lock().expect("acks").push(through);
        })
    }
}

#[test]
fn a_reload_mid_run_leaves_batches_in_flight_on_their_generation() {
    let old_pack = echo("old");
    let new_pack = echo("new");
    let (runtime, old) = old_pack.load(ECHO_POLICY).expect("loads");
    let new = runtime
        .load(PackSource::Dir(new_pack.path().to_owned()))
        .expect("loads");
    let packs = Arc::new(PackSet::new(vec![old.clone()]));
    let jsonl = events(10);
    let mut source = Observed::new(&jsonl);
    // Before the third batch is read, the pack is swapped.
    let swapper = packs.clone();
    let mut replacement = Some(new.clone());
    source.on_fill = Box::new(move |fill| {
        if fill == 3 {
            let replaced = swapper.put(replacement.take().expect("one swap"));
            assert_eq!(&*replaced.expect("replaces").detectors[0].id, "old");
        }
    });
    let mut sink = Memory::default();
    let stats = Pipeline {
        packs: &packs,
        notices: None,
        observer: None,
        audit: None,
        revocations: runtime.revocations.clone(),
        batch_size: 2,
        linger: DEFAULT_LINGER,
        enrichment: runtime.policy.enrichment.clone(),
    }
    .run(&mut source, &mut sink)
    .expect("run");
    assert_eq!(stats.events, 10);
    let by_plugin: Vec<(u64, &str)> = (sink.findings.iter())
        .map(|f| (f.event.line, f.plugin.as_str()))
        .collect();
    let expected: Vec<(u64, &str)> = (1..=10)
        .map(|line| (line, if line <= 4 { "old" } else { "new" }))
        .collect();
    assert_eq!(by_plugin, expected);
    // The run let go of the old generation; the set holds the new one.
    assert_eq!(
        Arc::strong_count(&old),
        1,
        "only the test holds the old generation"
    );
    assert!(Arc::ptr_eq(&packs.get("t").expect("pack t"), &new));
}

#[test]
fn a_source_is_acknowledged_only_once_its_batch_is_in_the_audit_log() {
    let pack = echo("old");
    let policy = Policy::parse("test-policy.toml", ECHO_POLICY).expect("policy");
    let audit_dir = pack.dir.path().join("audit");
    let options = HostOptions {
        policy,
        state_dir: pack.state_dir.clone(),
        audit_dir: Some(audit_dir.clone()),
        command: "test".into(),
    };
    let mut host =
        Host::open(options, &[PackSource::Dir(pack.path().to_owned())]).expect("host starts");
    let jsonl = events(10);
    let mut source = Observed::new(&jsonl);
    let name = source.name().to_owned();
    let log = audit_dir.clone();
    source.on_ack = Some(Box::new(move |through| {
        // The log, read as a resumed run would, already covers the batch.
        let recorded = resume::interrupted_position(&log, &name)
            .expect("log readable")
            .expect("a run in progress");
        assert!(
            recorded.offset >= through.offset,
            "acknowledged {through:?} before the log held it (log at {recorded:?})"
        );
    }));
    let acks = source.acks.clone();
    let stats = (host.run(&mut source, &mut Memory::default(), None, 3)).expect("run");
    host.close("test done").expect("closes");
    let acks = acks.lock().expect("acks").clone();
    assert_eq!(
        acks.iter().map(|p| p.line).collect::<Vec<_>>(),
        [3, 6, 9, 10]
    );
    assert_eq!(acks.last(), Some(&stats.end));
}

#[test]
fn every_generation_of_a_plugin_shares_one_state_store() {
    let pack = TestPack::new(&[PluginSpec {
        id: "counter",
        crate_name: "hostile",
        capabilities: ALL_CAPS,
        config: "mode = \"counter\"",
    }]);
    let policy = r#"
[packs.t.plugins.counter]
capabilities = ["log", "config", "state", "clock"]
state = { key_prefixes = ["count/"] }
"#;
    let (runtime, first) = pack.load(policy).expect("loads");
    // A reload while the first generation lives: before the registry, the
    // second open of the redb file failed.
    let second = runtime
        .load(PackSource::Dir(pack.path().to_owned()))
        .expect("a second generation loads while the first holds the store");
    let total = |generation| {
        let (_, findings) = vigil_tests::run(generation, &events(3), 3);
        vigil_tests::evidence(&findings[0], "total")
            .expect("total")
            .to_owned()
    };
    assert_eq!(total(&first), "3");
    assert_eq!(
        total(&second),
        "6",
        "the second generation sees the first's writes"
    );
    assert_eq!(total(&first), "9");
}
