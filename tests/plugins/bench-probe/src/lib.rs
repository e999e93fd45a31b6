//! Benchmark-only detector measuring the cost of getting events into a plugin.
//!
//! Config `mode`:
//! - `noop`: declares no fields and does nothing (boundary + SDK cost);
//! - `noop-whole`: does nothing but receives whole events (no projection);
//! - `fields`: declares and reads `Image`, `CommandLine` and `User` of every
//!   event and tests `CommandLine` for a substring (a typical rule);
//! - `fields-whole`: the same reads on whole events.

use vigil_sdk::{Config, Detector, Event, Finding, Findings, PluginError, Severity};

/// The probe.
pub struct BenchProbe {
    read_fields: bool,
    project: bool,
}

/// The fields the `fields` modes read.
const FIELDS: [&str; 3] = [
    "Event.EventData.Image",
    "Event.EventData.CommandLine",
    "Event.EventData.User",
];

impl Detector for BenchProbe {
    fn init(config: &Config) -> Result<Self, PluginError> {
        let (read_fields, project) = match config.get("mode").unwrap_or("noop") {
            "noop" => (false, true),
            "noop-whole" => (false, false),
            "fields" => (true, true),
            "fields-whole" => (true, false),
            other => {
                return Err(PluginError::InvalidConfig(format!(
                    "unknown `mode` `{other}`"
                )));
            }
        };
        Ok(BenchProbe {
            read_fields,
            project,
        })
    }

    fn fields(&self) -> Option<Vec<String>> {
        match (self.project, self.read_fields) {
            (false, _) => None,
            (true, false) => Some(Vec::new()),
            (true, true) => Some(FIELDS.map(str::to_owned).to_vec()),
        }
    }

    fn detect(&mut self, event: &Event<'_>, findings: &mut Findings) {
        if !self.read_fields {
            return;
        }
        let image = event.str(FIELDS[0]).unwrap_or("");
        let command_line = event.str(FIELDS[1]).unwrap_or("");
        let user = event.str(FIELDS[2]).unwrap_or("");
        // Never true on the benchmark data: the cost measured is the reading.
        if command_line.contains("vigil-bench-marker") && !image.is_empty() && !user.is_empty() {
            findings.push(Finding::new("bench.marker", "marker", Severity::Info));
        }
    }
}

vigil_sdk::export_detector!(BenchProbe);
