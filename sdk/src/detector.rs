//! The `Detector` trait and the glue between it and the WIT exports.

use std::any::Any;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Deref;

use vigil_event::EventRef;

use crate::bindings::vigil::plugin::types as wit;
use crate::finding::{Finding, Severity};

/// A detection plugin. Implement this for your struct and export it with
/// [`crate::export_detector!`].
///
/// The host creates a fresh instance for every batch, calls [`Detector::init`]
/// once and then [`Detector::detect_batch`]; nothing survives between batches
/// except what the plugin puts in [`crate::state`].
pub trait Detector: Sized + 'static {
    /// Build the plugin from its configuration (`config` table in `pack.toml`).
    fn init(config: &Config) -> Result<Self, PluginError>;

    /// Dotted paths of the event fields this plugin reads. The host then
    /// sends only those fields, which makes every batch cheaper. `None` (the
    /// default) receives whole events. A field left out here reads as absent,
    /// and [`crate::testing::TestHost`] applies the same projection, so a
    /// forgotten path shows up in the plugin's own tests.
    fn fields(&self) -> Option<Vec<String>> {
        None
    }

    /// Inspect one event; push any findings to `findings`.
    fn detect(&mut self, event: &Event<'_>, findings: &mut Findings);

    /// Inspect a whole batch. The default calls [`Detector::detect`] for each
    /// event in order; override it to correlate across a batch.
    fn detect_batch(&mut self, events: &[Event<'_>], findings: &mut Findings) {
        for event in events {
            findings.current_event = event.id;
            self.detect(event, findings);
        }
    }
}

/// Why a plugin could not do its work (mirrors WIT `types.plugin-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginError {
    /// The configuration is unusable; say which key and why.
    InvalidConfig(String),
    /// An event could not be read.
    InvalidEvent(String),
    /// Anything else.
    Internal(String),
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginError::InvalidConfig(m) => write!(f, "invalid config: {m}"),
            PluginError::InvalidEvent(m) => write!(f, "invalid event: {m}"),
            PluginError::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl std::error::Error for PluginError {}

/// The plugin's configuration as the host passed it to `init`.
///
/// Strings arrive verbatim; other TOML values arrive as JSON text, which the
/// typed getters parse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: BTreeMap<String, String>,
}

impl Config {
    /// Build from key/value pairs (what `init` receives).
    pub fn from_entries(entries: impl IntoIterator<Item = (String, String)>) -> Self {
        Config {
            entries: entries.into_iter().collect(),
        }
    }

    /// The raw text of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// `key` as an unsigned integer, or `default` when unset.
    pub fn u64_or(&self, key: &str, default: u64) -> Result<u64, PluginError> {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => raw.trim().parse().map_err(|_| {
                PluginError::InvalidConfig(format!(
                    "`{key}` must be a non-negative integer, got `{raw}`"
                ))
            }),
        }
    }

    /// `key` as a list of strings (a TOML array of strings); empty when unset.
    pub fn string_list(&self, key: &str) -> Result<Vec<String>, PluginError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(raw) => serde_json::from_str::<Vec<String>>(raw).map_err(|_| {
                PluginError::InvalidConfig(format!(
                    "`{key}` must be an array of strings, got `{raw}`"
                ))
            }),
        }
    }

    /// All keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

/// One event of the batch: its host-assigned id and its fields.
///
/// Derefs to [`EventRef`], so `event.str("Event.EventData.Image")` reads a
/// field by dotted path without allocating.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// Host-assigned id (the line number for JSON Lines input).
    pub id: u64,
    fields: EventRef<'a>,
}

impl<'a> Event<'a> {
    /// Pair an id with encoded fields.
    pub fn new(id: u64, fields: EventRef<'a>) -> Self {
        Event { id, fields }
    }
}

impl<'a> Deref for Event<'a> {
    type Target = EventRef<'a>;

    fn deref(&self) -> &EventRef<'a> {
        &self.fields
    }
}

/// Findings collected during one batch.
#[derive(Debug, Default)]
pub struct Findings {
    pub(crate) current_event: u64,
    items: Vec<Finding>,
}

impl Findings {
    /// Record a finding for the event being inspected.
    pub fn push(&mut self, finding: Finding) {
        let event_id = self.current_event;
        self.push_for(event_id, finding);
    }

    /// Record a finding for a specific event of the batch (for
    /// [`Detector::detect_batch`] overrides that correlate across events).
    pub fn push_for(&mut self, event_id: u64, mut finding: Finding) {
        finding.event_id = event_id;
        self.items.push(finding);
    }

    /// The findings so far.
    pub fn as_slice(&self) -> &[Finding] {
        &self.items
    }

    /// Take the findings out.
    pub fn into_vec(self) -> Vec<Finding> {
        self.items
    }
}

thread_local! {
    /// The plugin value built by `init`. Wasm components are single-threaded
    /// and the host makes a fresh instance per batch, so one slot suffices.
    static PLUGIN: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Export glue for `init`.
#[doc(hidden)]
pub fn export_init<P: Detector>(
    config: wit::ConfigEntries,
) -> Result<wit::DetectorInfo, wit::PluginError> {
    let plugin = P::init(&Config::from_entries(config)).map_err(to_wit_error)?;
    let info = wit::DetectorInfo {
        fields: plugin.fields(),
    };
    PLUGIN.with(|slot| *slot.borrow_mut() = Some(Box::new(plugin)));
    Ok(info)
}

/// Export glue for `detect`.
#[doc(hidden)]
pub fn export_detect<P: Detector>(
    batch: wit::EventBatch,
) -> Result<Vec<wit::Finding>, wit::PluginError> {
    let events = decode_batch(&batch).map_err(to_wit_error)?;
    PLUGIN.with(|slot| {
        let mut slot = slot.borrow_mut();
        let plugin = slot
            .as_mut()
            .and_then(|p| p.downcast_mut::<P>())
            .ok_or_else(|| wit::PluginError::Internal("detect called before init".into()))?;
        let mut findings = Findings::default();
        plugin.detect_batch(&events, &mut findings);
        Ok(findings
            .into_vec()
            .into_iter()
            .map(to_wit_finding)
            .collect())
    })
}

/// Read a framed batch (WIT `event-batch`) into events.
pub(crate) fn decode_batch(wire: &[u8]) -> Result<Vec<Event<'_>>, PluginError> {
    vigil_event::frames(wire)
        .map(|frame| {
            frame
                .map(|(id, fields)| Event::new(id, fields))
                .map_err(|e| PluginError::InvalidEvent(e.to_string()))
        })
        .collect()
}

fn to_wit_error(e: PluginError) -> wit::PluginError {
    match e {
        PluginError::InvalidConfig(m) => wit::PluginError::InvalidConfig(m),
        PluginError::InvalidEvent(m) => wit::PluginError::InvalidEvent(m),
        PluginError::Internal(m) => wit::PluginError::Internal(m),
    }
}

fn to_wit_finding(f: Finding) -> wit::Finding {
    wit::Finding {
        event_id: f.event_id,
        rule_id: f.rule_id,
        title: f.title,
        severity: match f.severity {
            Severity::Info => wit::Severity::Info,
            Severity::Low => wit::Severity::Low,
            Severity::Medium => wit::Severity::Medium,
            Severity::High => wit::Severity::High,
            Severity::Critical => wit::Severity::Critical,
        },
        techniques: f.techniques,
        evidence: f
            .evidence
            .into_iter()
            .map(|(key, value)| wit::Evidence { key, value })
            .collect(),
    }
}
