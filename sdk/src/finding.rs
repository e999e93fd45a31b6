//! The finding builder.

/// How serious a finding is, lowest first (mirrors WIT `types.severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Informational.
    Info,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

/// A detection result under construction. The SDK fills in the triggering
/// event when the finding is pushed to [`crate::Findings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Id of the triggering event (set by [`crate::Findings::push`]).
    pub event_id: u64,
    /// Stable rule identifier.
    pub rule_id: String,
    /// One-line title.
    pub title: String,
    /// Severity.
    pub severity: Severity,
    /// MITRE ATT&CK technique ids.
    pub techniques: Vec<String>,
    /// Supporting key/value evidence, in insertion order.
    pub evidence: Vec<(String, String)>,
}

impl Finding {
    /// Start a finding for `rule_id`.
    pub fn new(rule_id: impl Into<String>, title: impl Into<String>, severity: Severity) -> Self {
        Finding {
            event_id: 0,
            rule_id: rule_id.into(),
            title: title.into(),
            severity,
            techniques: Vec::new(),
            evidence: Vec::new(),
        }
    }

    /// Add a MITRE ATT&CK technique id, e.g. `T1059.001`.
    pub fn technique(mut self, id: impl Into<String>) -> Self {
        self.techniques.push(id.into());
        self
    }

    /// Add one piece of evidence.
    pub fn evidence(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.evidence.push((key.into(), value.into()));
        self
    }
}
