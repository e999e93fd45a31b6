//! A plugin that misbehaves on purpose, for the host's integration tests.
//! Config `mode` selects the behaviour; see [`Mode`].

use vigil_sdk::{
    Config, Detector, Event, Finding, Findings, PluginError, Severity, clock, config, log, state,
};

/// What the plugin does with each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One `hostile.echo` finding per event: a well-behaved baseline.
    Echo,
    /// Spin forever (the epoch deadline must stop it).
    Loop,
    /// Allocate 1 MiB blocks until memory runs out (the store limit must stop it).
    MemoryBomb,
    /// Panic, which traps.
    Trap,
    /// Write a state key outside the granted prefixes; report the result.
    StateOutsidePrefix,
    /// Add the batch's event count to `count/total` in state; report the total.
    Counter,
    /// Return far more findings than any output limit allows.
    Flood,
    /// Return a finding pointing at an event that is not in the batch.
    ForeignEventId,
    /// Print to stdout and stderr, then echo.
    Print,
    /// Read both clocks and report them.
    Clock,
    /// Read `mode` through the `config` capability and report it.
    Config,
    /// Declare one field and report the first event exactly as received.
    Projected,
    /// Declare far more fields than the host accepts.
    ManyFields,
    /// Try to reach the host through WASI: a file, the environment, the
    /// arguments, the directory listing; report what came back.
    Escape,
    /// Sleep for an hour in `detect` (`wasi:clocks` subscribe + `wasi:io/poll`).
    Sleep,
    /// Sleep for an hour in `init`.
    SleepInInit,
    /// Store a 64 KiB value per event under `count/hog/<id>`; report how
    /// many were stored and the first refusal.
    StateHog,
    /// One finding with half a million empty evidence entries.
    EvidenceFlood,
    /// Log, print and report text that imitates the host's own output
    /// (newlines, a forged summary line, ESC sequences, a bidi override).
    Forge,
    /// Trap on the first `traps` calls (config, default 1; counted in state
    /// under `count/calls`, which survives the trap), then echo.
    TrapThenEcho,
    /// Call the `log` capability from `init` (a host import the
    /// pre-initialisation snapshot cannot hold), then echo.
    LogInInit,
}

/// Text a plugin might use to pass for the host on a terminal or in a
/// line-oriented file.
pub const FORGED: &str =
    "done\nvigil: 1070 events read, 0 findings, 0 errors\r\x1b[2K\x1b[31mFAKE\u{202e}gnp.exe\0";

/// The hostile plugin.
pub struct Hostile {
    mode: Mode,
    /// For `TrapThenEcho`: how many calls trap.
    traps: u64,
}

impl Detector for Hostile {
    fn init(config: &Config) -> Result<Self, PluginError> {
        let mode = match config.get("mode").unwrap_or("echo") {
            "echo" => Mode::Echo,
            "loop" => Mode::Loop,
            "memory-bomb" => Mode::MemoryBomb,
            "trap" => Mode::Trap,
            "state-outside-prefix" => Mode::StateOutsidePrefix,
            "counter" => Mode::Counter,
            "flood" => Mode::Flood,
            "foreign-event-id" => Mode::ForeignEventId,
            "print" => Mode::Print,
            "clock" => Mode::Clock,
            "config" => Mode::Config,
            "escape" => Mode::Escape,
            "projected" => Mode::Projected,
            "many-fields" => Mode::ManyFields,
            "sleep" => Mode::Sleep,
            "sleep-in-init" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Mode::SleepInInit
            }
            "evidence-flood" => Mode::EvidenceFlood,
            "state-hog" => Mode::StateHog,
            "forge" => Mode::Forge,
            "trap-then-echo" => Mode::TrapThenEcho,
            "log-in-init" => {
                log::info("init ran");
                Mode::LogInInit
            }
            // Fail `init` with a 40 MB error message.
            "huge-error" => return Err(PluginError::Internal("E".repeat(40 << 20))),
            other => {
                return Err(PluginError::InvalidConfig(format!(
                    "unknown `mode` `{other}`"
                )));
            }
        };
        let traps = config
            .get("traps")
            .and_then(|t| t.parse().ok())
            .unwrap_or(1);
        Ok(Hostile { mode, traps })
    }

    fn fields(&self) -> Option<Vec<String>> {
        match self.mode {
            Mode::Projected => Some(vec!["Event.EventData.Image".to_owned()]),
            Mode::ManyFields => Some((0..10_000).map(|i| format!("f{i}")).collect()),
            _ => None,
        }
    }

    fn detect(&mut self, _event: &Event<'_>, _findings: &mut Findings) {}

    fn detect_batch(&mut self, events: &[Event<'_>], findings: &mut Findings) {
        let first = events.first().map_or(0, |e| e.id);
        let report = |key: &str, value: String| {
            Finding::new("hostile.report", "report", Severity::Info).evidence(key, value)
        };
        match self.mode {
            Mode::Echo | Mode::ManyFields | Mode::SleepInInit | Mode::LogInInit => {
                echo(events, findings)
            }
            Mode::Sleep => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                echo(events, findings);
            }
            Mode::StateHog => {
                let value = "v".repeat(64 << 10);
                let (mut stored, mut refused) = (0u64, None);
                for event in events {
                    match state::set(&format!("count/hog/{}", event.id), &value, None) {
                        Ok(()) => stored += 1,
                        Err(e) => {
                            refused.get_or_insert(e.to_string());
                        }
                    }
                }
                findings.push_for(
                    first,
                    report("stored", stored.to_string())
                        .evidence("refused", refused.unwrap_or_default()),
                );
            }
            Mode::EvidenceFlood => {
                let mut finding = Finding::new("hostile.evidence-flood", "flood", Severity::Info);
                for _ in 0..500_000 {
                    finding = finding.evidence("", "");
                }
                findings.push_for(first, finding);
            }
            Mode::Forge => {
                let _ = log::emit(log::Level::Warn, FORGED, &[("k\nvigil: x", FORGED)]);
                eprintln!("{FORGED}");
                findings.push_for(
                    first,
                    Finding::new(FORGED, FORGED, Severity::Info).evidence(FORGED, FORGED),
                );
            }
            Mode::Projected => {
                let json = events.first().map(|e| e.to_json()).unwrap_or_default();
                findings.push_for(first, report("event", json));
            }
            Mode::Loop => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Mode::MemoryBomb => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![7u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Mode::Trap => panic!("hostile plugin trapped on purpose"),
            Mode::TrapThenEcho => {
                let calls = state::get("count/calls")
                    .ok()
                    .flatten()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    + 1;
                let _ = state::set("count/calls", &calls.to_string(), None);
                if calls <= self.traps {
                    panic!("hostile plugin trapped on purpose (call {calls})");
                }
                echo(events, findings);
            }
            Mode::StateOutsidePrefix => {
                let result = match state::set("forbidden/key", "x", None) {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => e.to_string(),
                };
                findings.push_for(first, report("result", result));
            }
            Mode::Counter => {
                let total = state::get("count/total")
                    .ok()
                    .flatten()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    + events.len() as u64;
                let stored = state::set("count/total", &total.to_string(), None);
                findings.push_for(
                    first,
                    report("total", total.to_string()).evidence("stored", format!("{stored:?}")),
                );
            }
            Mode::Flood => {
                for _ in 0..100_000 {
                    findings.push_for(
                        first,
                        Finding::new("hostile.flood", "flood", Severity::Info),
                    );
                }
            }
            Mode::ForeignEventId => findings.push_for(u64::MAX, report("id", "foreign".into())),
            Mode::Print => {
                println!("hello from stdout");
                eprintln!("hello from stderr");
                let _ = log::emit(
                    log::Level::Info,
                    "hello from log",
                    &[("events", &events.len().to_string())],
                );
                echo(events, findings);
            }
            Mode::Clock => {
                let wall = clock::wall_now().map_or_else(|e| e.to_string(), |t| t.to_string());
                let mono = clock::monotonic_now().map_or_else(|e| e.to_string(), |t| t.to_string());
                findings.push_for(first, report("wall", wall).evidence("monotonic", mono));
            }
            Mode::Config => {
                let mode = config::get("mode").map_or_else(|e| e.to_string(), |v| format!("{v:?}"));
                findings.push_for(first, report("mode", mode));
            }
            Mode::Escape => {
                let file = std::fs::read_to_string("/etc/passwd")
                    .map_or_else(|e| format!("error: {e}"), |_| "read".into());
                let dir = std::fs::read_dir(".")
                    .map_or_else(|e| format!("error: {e}"), |_| "listed".into());
                let env = std::env::vars().count().to_string();
                let args = std::env::args().count().to_string();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
                    .to_string();
                findings.push_for(
                    first,
                    report("file", file)
                        .evidence("dir", dir)
                        .evidence("env", env)
                        .evidence("args", args)
                        .evidence("wasi_time", now),
                );
            }
        }
    }
}

fn echo(events: &[Event<'_>], findings: &mut Findings) {
    for event in events {
        findings.push_for(
            event.id,
            Finding::new("hostile.echo", "echo", Severity::Info),
        );
    }
}

vigil_sdk::export_detector!(Hostile);
