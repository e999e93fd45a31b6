//! Benchmark-only detector measuring the cost of getting events into a plugin.
//!
//! Config `mode`:
//! - `noop`: declares no fields and does nothing (boundary + SDK cost);
//! - `noop-whole`: does nothing but receives whole events (no projection);
//! - `fields`: declares and reads `Image`, `CommandLine` and `User` of every
//!   event and tests `CommandLine` for a substring (a typical rule: the
//!   searcher is built once in `init`; `str::contains` would rebuild it for
//!   every event, which costs about as much as the search);
//! - `fields-whole`: the same reads on whole events.

use memchr::memmem::Finder;
use vigil_sdk::{Config, Detector, Event, Finding, Findings, PluginError, Severity};

/// The probe.
pub struct BenchProbe {
    read_fields: bool,
    project: bool,
    marker: Finder<'static>,
}

/// Never present in the benchmark data: the cost measured is the reading.
const MARKER: &str = "vigil-bench-marker";

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
            marker: Finder::new(MARKER),
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
        let marked = self.marker.find(command_line.as_bytes()).is_some();
        if marked && !image.is_empty() && !user.is_empty() {
            findings.push(Finding::new("bench.marker", "marker", Severity::Info));
        }
    }
}

vigil_sdk::export_detector!(BenchProbe);
