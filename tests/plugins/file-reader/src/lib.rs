//! Reads every path of config `paths` through the `files` capability on
//! each batch and reports one `file.read` finding per path, with the
//! outcome (`N bytes` or the error) and the content's first line, for the
//! host's tests of the `files` capability (escapes, replay).

use vigil_sdk::{Config, Detector, Event, Finding, Findings, PluginError, Severity, files};

/// The plugin: the paths it reads.
pub struct FileReader {
    paths: Vec<String>,
}

impl Detector for FileReader {
    fn init(config: &Config) -> Result<Self, PluginError> {
        Ok(FileReader {
            paths: config.string_list("paths")?,
        })
    }

    fn detect(&mut self, _event: &Event<'_>, _findings: &mut Findings) {}

    fn detect_batch(&mut self, events: &[Event<'_>], findings: &mut Findings) {
        let Some(first) = events.first().map(|e| e.id) else {
            return;
        };
        for path in &self.paths {
            let (outcome, head) = match files::read(path) {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let head = text.lines().next().unwrap_or_default().to_owned();
                    (format!("{} bytes", bytes.len()), head)
                }
                Err(e) => (e.to_string(), String::new()),
            };
            findings.push_for(
                first,
                Finding::new("file.read", "file read", Severity::Info)
                    .evidence("path", path.as_str())
                    .evidence("outcome", outcome)
                    .evidence("head", head),
            );
        }
    }
}

vigil_sdk::export_detector!(FileReader);
