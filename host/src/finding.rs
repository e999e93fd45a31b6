//! Findings as they leave the host: one JSON object per line.
//!
//! ```json
//! {"pack":"starter","plugin":"ioc-match","rule_id":"vigil.ioc.domain",
//!  "title":"Contact with a known-bad domain","severity":"high",
//!  "techniques":["T1071.004"],"evidence":{"QueryName":"a.kxvrnet.top"},
//!  "event":{"source":"events.jsonl","line":42}}
//! ```

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::bindings::vigil::plugin::types::{self as wit, Enrichment, Evidence, Finding, Priority};

/// A finding with its provenance, as written to the output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingRecord {
    /// Pack name.
    pub pack: String,
    /// Plugin id.
    pub plugin: String,
    /// Rule id.
    pub rule_id: String,
    /// Title.
    pub title: String,
    /// How bad: `info`, `low`, `medium`, `high` or `critical`.
    pub severity: Severity,
    /// ATT&CK technique ids.
    pub techniques: Vec<String>,
    /// Evidence in the plugin's order.
    #[serde(serialize_with = "ordered_map", deserialize_with = "pairs_from_map")]
    pub evidence: Vec<(String, String)>,
    /// The triggering event.
    pub event: EventPosition,
    /// What each enricher of the pack added, or why it could not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enrichments: Vec<EnrichmentRecord>,
}

/// One enricher's result on a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrichmentRecord {
    /// `pack/plugin` of the enricher.
    pub plugin: String,
    /// The enrichment, or why there is none.
    #[serde(flatten)]
    pub result: EnrichmentResult,
}

/// An enrichment or the reason it is missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum EnrichmentResult {
    /// The enricher answered.
    Enriched {
        /// Analyst summary.
        summary: String,
        /// ATT&CK technique ids.
        techniques: Vec<String>,
        /// `low`, `medium`, `high` or `immediate`.
        priority: String,
        /// Where it came from (e.g. the model).
        source: String,
    },
    /// No enrichment: denied, revoked, rate-limited, timed out, malformed
    /// answer, queue full, plugin failure. The finding is emitted anyway.
    Unavailable {
        /// Why.
        reason: String,
    },
}

impl EnrichmentResult {
    /// The output form of a plugin's enrichment.
    pub fn enriched(e: Enrichment) -> Self {
        EnrichmentResult::Enriched {
            summary: e.summary,
            techniques: e.techniques,
            priority: match e.priority {
                Priority::Low => "low",
                Priority::Medium => "medium",
                Priority::High => "high",
                Priority::Immediate => "immediate",
            }
            .to_owned(),
            source: e.source,
        }
    }
}

/// Most evidence entries one finding may carry. Guest-controlled: evidence
/// is emitted and recorded entry by entry, so its count is bounded on its
/// own, not just through the bytes of its strings.
pub const MAX_EVIDENCE_PER_FINDING: usize = 256;

/// Most ATT&CK technique ids one finding or enrichment may carry.
pub const MAX_TECHNIQUES: usize = 64;

/// The JSON bytes of a finding's fixed keys and punctuation, with the
/// longest severity and event line: what an empty finding costs.
const FINDING_FRAME_BYTES: usize = 160;

/// Bytes `text` takes as a JSON string, quotes included (`serde_json`
/// escapes `"`, `\` and control characters; `\u00XX` is the longest form).
pub fn json_string_bytes(text: &str) -> usize {
    2 + text
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..0x20 => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// Bytes `f` takes when emitted as a JSON line (the audit record holds
/// about as much again): every string as escaped, plus the quotes, keys and
/// separators of every technique and evidence entry. Counting only string
/// bytes let a million empty evidence entries through as "0 bytes".
pub fn emitted_bytes(f: &Finding) -> usize {
    FINDING_FRAME_BYTES
        + json_string_bytes(&f.rule_id)
        + json_string_bytes(&f.title)
        + (f.techniques.iter())
            .map(|t| json_string_bytes(t) + 1)
            .sum::<usize>()
        + (f.evidence.iter())
            .map(|e| json_string_bytes(&e.key) + json_string_bytes(&e.value) + 2)
            .sum::<usize>()
}

/// Bytes an enrichment takes when emitted, counted as for findings.
pub fn enrichment_bytes(e: &Enrichment) -> usize {
    // `{"plugin":"","status":"enriched","summary":"","techniques":[],
    // "priority":"immediate","source":""}`
    100 + json_string_bytes(&e.summary)
        + json_string_bytes(&e.source)
        + (e.techniques.iter())
            .map(|t| json_string_bytes(t) + 1)
            .sum::<usize>()
}

/// Where an event came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPosition {
    /// Input name (file path or `-` for stdin).
    pub source: String,
    /// 1-based line number.
    pub line: u64,
}

/// How bad a finding is, as the log and the output write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
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

impl Severity {
    /// Lower-case name, as written.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<wit::Severity> for Severity {
    fn from(s: wit::Severity) -> Self {
        match s {
            wit::Severity::Info => Severity::Info,
            wit::Severity::Low => Severity::Low,
            wit::Severity::Medium => Severity::Medium,
            wit::Severity::High => Severity::High,
            wit::Severity::Critical => Severity::Critical,
        }
    }
}

impl From<Severity> for wit::Severity {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Info => wit::Severity::Info,
            Severity::Low => wit::Severity::Low,
            Severity::Medium => wit::Severity::Medium,
            Severity::High => wit::Severity::High,
            Severity::Critical => wit::Severity::Critical,
        }
    }
}

impl FindingRecord {
    /// Attach provenance to a plugin's finding.
    pub fn new(pack: &str, plugin: &str, source: &str, f: Finding) -> Self {
        FindingRecord {
            pack: pack.to_owned(),
            plugin: plugin.to_owned(),
            rule_id: f.rule_id,
            title: f.title,
            severity: f.severity.into(),
            techniques: f.techniques,
            evidence: f.evidence.into_iter().map(|e| (e.key, e.value)).collect(),
            event: EventPosition {
                source: source.to_owned(),
                line: f.event_id,
            },
            enrichments: Vec::new(),
        }
    }

    /// The finding as an enricher receives it (`event-id` is the line).
    pub fn to_wit(&self) -> Finding {
        Finding {
            event_id: self.event.line,
            rule_id: self.rule_id.clone(),
            title: self.title.clone(),
            severity: self.severity.into(),
            techniques: self.techniques.clone(),
            evidence: (self.evidence.iter())
                .map(|(key, value)| Evidence {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
        }
    }
}

fn ordered_map<S: Serializer>(pairs: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(pairs.len()))?;
    for (k, v) in pairs {
        map.serialize_entry(k, v)?;
    }
    map.end()
}

/// Read evidence back in file order (a `serde_json::Map` would sort it,
/// and replay compares evidence order too).
fn pairs_from_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, String)>, D::Error> {
    struct Pairs;
    impl<'de> serde::de::Visitor<'de> for Pairs {
        type Value = Vec<(String, String)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of evidence")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                out.push((k, v));
            }
            Ok(out)
        }
    }
    d.deserialize_map(Pairs)
}
