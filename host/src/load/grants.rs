//! What a plugin was allowed, as the pack-load record holds it and the
//! grants in force are resolved from (`capability/registry.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::capability::Capability;
use crate::run::limits::LimitsRecord;

/// Everything a plugin was allowed, as one hashable value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "GrantSetWire")]
pub struct GrantSet {
    /// Capabilities requested in `pack.toml`.
    pub requested: Vec<Capability>,
    /// Effective capabilities (requested ∩ granted); only these are linked.
    pub effective: Vec<Capability>,
    /// The plugin's config entries as `init` receives them.
    pub config: Vec<(String, String)>,
    /// Limits the plugin runs under.
    pub limits: LimitsRecord,
    /// The scope of each effective capability that has one, as its module
    /// defines it (`capability/registry.rs`): state key prefixes and quota,
    /// http origins and header templates (never secret values), files
    /// directories. The grant in force is resolved from exactly this.
    #[serde(default)]
    pub scopes: BTreeMap<Capability, serde_json::Value>,
}

/// [`GrantSet`] as logs hold it: logs written before grants were recorded
/// generically have `state_key_prefixes`, `http` and `files` fields
/// instead of `scopes`; they read as the same scopes.
#[derive(Deserialize)]
struct GrantSetWire {
    requested: Vec<Capability>,
    effective: Vec<Capability>,
    config: Vec<(String, String)>,
    limits: LimitsRecord,
    #[serde(default)]
    scopes: BTreeMap<Capability, serde_json::Value>,
    #[serde(default)]
    state_key_prefixes: Option<Vec<String>>,
    #[serde(default)]
    http: Option<serde_json::Value>,
    #[serde(default)]
    files: Option<serde_json::Value>,
}

impl From<GrantSetWire> for GrantSet {
    fn from(wire: GrantSetWire) -> GrantSet {
        let mut scopes = wire.scopes;
        let effective = |c: Capability| wire.effective.contains(&c);
        if let Some(prefixes) = wire.state_key_prefixes
            && effective(Capability::State)
        {
            scopes
                .entry(Capability::State)
                .or_insert_with(|| serde_json::json!({ "key_prefixes": prefixes }));
        }
        for (capability, scope) in [
            (Capability::Http, wire.http),
            (Capability::Files, wire.files),
        ] {
            if let Some(scope) = scope {
                scopes.entry(capability).or_insert(scope);
            }
        }
        GrantSet {
            requested: wire.requested,
            effective: wire.effective,
            config: wire.config,
            limits: wire.limits,
            scopes,
        }
    }
}

impl GrantSet {
    /// SHA-256 of the grant set's JSON: the digest invocations refer to.
    pub fn digest(&self) -> String {
        let json = serde_json::to_vec(self).expect("a grant set serializes");
        hex::encode(Sha256::digest(json))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_sets_of_older_logs_read_as_generic_scopes() {
        let limits = r#"{"deadline_ms":250,"memory_bytes":67108864,"max_findings_per_batch":1,
            "max_output_bytes":1,"quarantine_after":3,"log_records_per_call":100}"#;
        let old = format!(
            r#"{{"requested":["state","http","files"],"effective":["state","http","files"],
               "state_key_prefixes":["fail/"],"config":[],"limits":{limits},
               "http":{{"origins":["https://a.example"]}},"files":{{"dirs":["intel/"]}}}}"#
        );
        let read: GrantSet = serde_json::from_str(&old).expect("an older grant set reads");
        assert_eq!(read.scopes[&Capability::State]["key_prefixes"][0], "fail/");
        assert_eq!(
            read.scopes[&Capability::Http]["origins"][0],
            "https://a.example"
        );
        assert_eq!(read.scopes[&Capability::Files]["dirs"][0], "intel/");
        // Written again, it has only `scopes`, and reads back the same.
        let json = serde_json::to_value(&read).expect("serializes");
        assert!(json.get("state_key_prefixes").is_none() && json.get("http").is_none());
        assert_eq!(json["scopes"]["state"]["key_prefixes"][0], "fail/");
        let again: GrantSet = serde_json::from_value(json).expect("reads");
        assert_eq!(again, read);
        // Prefixes of a plugin that did not have `state` are not a scope.
        let unused = old.replace(
            r#""effective":["state","http","files"]"#,
            r#""effective":[]"#,
        );
        let read: GrantSet = serde_json::from_str(&unused).expect("reads");
        assert!(!read.scopes.contains_key(&Capability::State));
    }
}
