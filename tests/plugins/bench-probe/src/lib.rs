//! Benchmark-only detector measuring the cost of getting events into a plugin.
//!
//! Config `mode`:
//! - `noop`: receives every batch and does nothing (boundary + SDK cost);
//! - `fields`: reads `Image`, `CommandLine` and `User` of every event and
//!   tests `CommandLine` for a substring (the typical rule's access pattern).

use vigil_sdk::{Config, Detector, Event, Finding, Findings, PluginError, Severity};

/// The probe.
pub struct BenchProbe {
    read_fields: bool,
}

impl Detector for BenchProbe {
    fn init(config: &Config) -> Result<Self, PluginError> {
        match config.get("mode").unwrap_or("noop") {
            "noop" => Ok(BenchProbe { read_fields: false }),
            "fields" => Ok(BenchProbe { read_fields: true }),
            other => Err(PluginError::InvalidConfig(format!(
                "unknown `mode` `{other}`"
            ))),
        }
    }

    fn detect(&mut self, event: &Event<'_>, findings: &mut Findings) {
        if !self.read_fields {
            return;
        }
        let image = event.str("Event.EventData.Image").unwrap_or("");
        let command_line = event.str("Event.EventData.CommandLine").unwrap_or("");
        let user = event.str("Event.EventData.User").unwrap_or("");
        // Never true on the benchmark data: the cost measured is the reading.
        if command_line.contains("vigil-bench-marker") && !image.is_empty() && !user.is_empty() {
            findings.push(Finding::new("bench.marker", "marker", Severity::Info));
        }
    }
}

vigil_sdk::export_detector!(BenchProbe);
