//! Native testing of plugin logic: no Wasm, no host.
//!
//! [`TestHost`] feeds JSON events through a [`Detector`] exactly as the host
//! would (same event encoding, same batch slicing) and serves capability
//! calls from memory, so `cargo test` in a plugin crate exercises its real
//! logic, including state kept across batches.
//!
//! ```ignore
//! let mut host = TestHost::new().config("min_length", "40");
//! let findings = host.run::<MyPlugin>(r#"{"Event":{"EventData":{"CommandLine":"..."}}}"#)?;
//! assert_eq!(findings[0].rule_id, "my.rule");
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use crate::detector::{Config, Detector, Findings, PluginError, decode_batch};
use crate::finding::Finding;

/// An in-memory stand-in for the host, for unit tests of plugin logic.
#[derive(Debug, Default)]
pub struct TestHost {
    config: BTreeMap<String, String>,
    next_id: u64,
}

impl TestHost {
    /// A host with empty config, empty state and the clock at the Unix epoch.
    /// State is per thread and starts empty for each new `TestHost`.
    pub fn new() -> Self {
        native::reset();
        TestHost::default()
    }

    /// Set one config value (same text form as `init` receives).
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.config.insert(key.to_owned(), value.to_owned());
        native::with(|h| h.config = self.config.clone());
        self
    }

    /// Serve `contents` at `path` through the `files` capability (the
    /// path as the plugin names it, e.g. `intel/iocs.txt`).
    pub fn file(self, path: &str, contents: &[u8]) -> Self {
        native::with(|h| h.files.insert(path.to_owned(), contents.to_vec()));
        self
    }

    /// Set the wall clock (nanoseconds since the Unix epoch).
    pub fn set_wall_clock(&mut self, nanos: u64) {
        native::with(|h| h.wall_ns = nanos);
    }

    /// Log records emitted so far, as `(level, message)`.
    pub fn logs(&self) -> Vec<(crate::log::Level, String)> {
        native::with(|h| h.logs.clone())
    }

    /// Run one batch of JSON Lines through a fresh plugin (fresh `init`, as
    /// the host does per batch). Events are projected onto the plugin's
    /// [`Detector::fields`] exactly as the host does. Event ids continue
    /// across calls, starting at 1.
    pub fn run<P: Detector>(&mut self, jsonl: &str) -> Result<Vec<Finding>, PluginError> {
        let mut plugin = P::init(&Config::from_entries(self.config.clone()))?;
        let projection = plugin.fields().map(vigil_event::Projection::new);
        let mut batch = vigil_event::Batch::new();
        for line in jsonl.lines().filter(|l| !l.trim().is_empty()) {
            self.next_id += 1;
            batch
                .push_json(self.next_id, line.as_bytes())
                .map_err(|e| {
                    PluginError::InvalidEvent(format!("test event {}: {e}", self.next_id))
                })?;
        }
        let mut projected = vigil_event::Batch::new();
        let batch = match &projection {
            Some(projection) => {
                batch.project_into(projection, &mut projected);
                &projected
            }
            None => &batch,
        };
        let events = decode_batch(batch.wire())?;
        let mut findings = Findings::default();
        plugin.detect_batch(&events, &mut findings);
        Ok(findings.into_vec())
    }
}

/// The in-memory capability implementations behind the SDK's functions on
/// native targets.
#[doc(hidden)]
pub mod native {
    use super::*;
    use crate::capability::CapabilityError;
    use crate::log::Level;

    #[derive(Debug, Default)]
    pub(super) struct NativeHost {
        pub(super) config: BTreeMap<String, String>,
        pub(super) state: HashMap<String, (String, Option<u64>)>,
        pub(super) wall_ns: u64,
        pub(super) logs: Vec<(Level, String)>,
        pub(super) files: BTreeMap<String, Vec<u8>>,
    }

    thread_local! {
        static HOST: RefCell<NativeHost> = RefCell::new(NativeHost::default());
    }

    pub(super) fn with<R>(f: impl FnOnce(&mut NativeHost) -> R) -> R {
        HOST.with(|h| f(&mut h.borrow_mut()))
    }

    pub(super) fn reset() {
        with(|h| *h = NativeHost::default());
    }

    pub fn log_emit(
        level: Level,
        message: &str,
        _fields: &[(&str, &str)],
    ) -> Result<(), CapabilityError> {
        with(|h| h.logs.push((level, message.to_owned())));
        Ok(())
    }

    pub fn config_get(key: &str) -> Result<Option<String>, CapabilityError> {
        Ok(with(|h| h.config.get(key).cloned()))
    }

    pub fn state_get(key: &str) -> Result<Option<String>, CapabilityError> {
        Ok(with(|h| {
            let now = h.wall_ns;
            match h.state.get(key) {
                Some((_, Some(expiry))) if *expiry <= now => None,
                Some((value, _)) => Some(value.clone()),
                None => None,
            }
        }))
    }

    pub fn state_set(
        key: &str,
        value: &str,
        ttl_seconds: Option<u64>,
    ) -> Result<(), CapabilityError> {
        with(|h| {
            let expiry =
                ttl_seconds.map(|t| h.wall_ns.saturating_add(t.saturating_mul(1_000_000_000)));
            h.state.insert(key.to_owned(), (value.to_owned(), expiry));
        });
        Ok(())
    }

    pub fn state_delete(key: &str) -> Result<(), CapabilityError> {
        with(|h| h.state.remove(key));
        Ok(())
    }

    pub fn files_read(path: &str) -> Result<Vec<u8>, CapabilityError> {
        with(|h| h.files.get(path).cloned()).ok_or(CapabilityError::NotFound)
    }

    pub fn files_list_dir(path: &str) -> Result<Vec<String>, CapabilityError> {
        let below = format!("{path}/");
        let mut names: Vec<String> = with(|h| {
            (h.files.keys())
                .filter_map(|name| name.strip_prefix(&below))
                .map(|rest| match rest.split_once('/') {
                    Some((dir, _)) => format!("{dir}/"),
                    None => rest.to_owned(),
                })
                .collect()
        });
        if names.is_empty() {
            return Err(CapabilityError::NotFound);
        }
        names.dedup();
        Ok(names)
    }

    pub fn clock_wall_now() -> Result<u64, CapabilityError> {
        Ok(with(|h| h.wall_ns))
    }

    pub fn clock_monotonic_now() -> Result<u64, CapabilityError> {
        Ok(with(|h| h.wall_ns))
    }
}
