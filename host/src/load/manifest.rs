//! `pack.toml`: what a pack contains and what each plugin requests.
//!
//! Written by the pack's author, so it is untrusted: unknown fields are
//! errors, names are restricted to safe path segments (they become state
//! file names), and component paths must stay inside the pack.
//!
//! ```toml
//! name = "starter"              # [a-z0-9][a-z0-9_-]*, unique per host
//! version = "0.1.0"
//! description = "..."           # optional
//!
//! [[plugins]]
//! id = "brute-force"            # [a-z0-9][a-z0-9_-]*, unique in the pack
//! component = "brute_force.wasm" # relative to the pack directory
//! world = "detector"            # detector | enricher | responder
//! capabilities = ["log", "state"] # requested; the operator decides what is granted
//! config = { threshold = 5 }    # passed to `init` and the `config` capability
//!
//! [[tests]]
//! name = "brute-force"
//! events = "cases/brute-force/events.jsonl"
//! expected = "cases/brute-force/expected.json"
//! ```

use std::collections::BTreeSet;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use crate::capability::Capability;

/// A parsed `pack.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackManifest {
    /// Pack name; identifies the pack in grants, state paths and output.
    pub name: String,
    /// Pack version, free-form (semver recommended).
    pub version: String,
    /// One-line description.
    #[serde(default)]
    pub description: Option<String>,
    /// The plugins, in dispatch order.
    #[serde(default)]
    pub plugins: Vec<PluginManifest>,
    /// Test cases run by `vigil test`.
    #[serde(default)]
    pub tests: Vec<TestCaseManifest>,
}

/// One plugin entry of a pack.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginManifest {
    /// Plugin id, unique within the pack.
    pub id: String,
    /// Path of the component, relative to the pack directory.
    pub component: String,
    /// The world the component exports.
    pub world: World,
    /// Capabilities the plugin asks for. Only these can be granted.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// The plugin's configuration.
    #[serde(default)]
    pub config: toml::Table,
}

/// A plugin role; written by this name in `pack.toml` and the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// Exports `init` and `detect`.
    Detector,
    /// Exports `init` and `respond` (host support comes with response actions).
    Responder,
    /// Exports `init` and `enrich`; runs on detectors' findings.
    Enricher,
}

impl World {
    /// The world's name as written in `pack.toml`.
    pub fn name(self) -> &'static str {
        match self {
            World::Detector => "detector",
            World::Responder => "responder",
            World::Enricher => "enricher",
        }
    }
}

/// One test case: events in, expected findings out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCaseManifest {
    /// Case name, shown in `vigil test` output.
    pub name: String,
    /// JSON Lines events, relative to the pack directory.
    pub events: String,
    /// JSON array of expected findings, relative to the pack directory.
    pub expected: String,
}

/// A problem with a manifest, naming the file and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// TOML syntax or schema error (the message carries line and column).
    #[error("{file}: {message}")]
    Parse {
        /// The manifest file.
        file: String,
        /// What is wrong, with position.
        message: String,
    },
    /// A semantic problem: a bad name, a duplicate id, an unsafe path.
    #[error("{file}: {message}")]
    Invalid {
        /// The manifest file.
        file: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// Whether `name` is a safe identifier: `[a-z0-9][a-z0-9_-]*`, at most 64 bytes.
pub fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'0'..=b'9'))
        && name.len() <= 64
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

/// Whether `path` is relative and never leaves its base directory.
pub fn is_contained_path(path: &str) -> bool {
    let p = Path::new(path);
    !path.is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

impl PackManifest {
    /// Parse and validate `text`, read from `file` (used in messages).
    pub fn parse(file: &str, text: &str) -> Result<Self, ManifestError> {
        let manifest: PackManifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            file: file.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        manifest.validate(file)?;
        Ok(manifest)
    }

    fn validate(&self, file: &str) -> Result<(), ManifestError> {
        let invalid = |message: String| {
            Err(ManifestError::Invalid {
                file: file.to_owned(),
                message,
            })
        };
        if !is_valid_name(&self.name) {
            return invalid(format!(
                "pack name `{}` is not allowed: use lower-case letters, digits, `-` and `_` (it names state files)",
                self.name
            ));
        }
        let mut ids = BTreeSet::new();
        for plugin in &self.plugins {
            if !is_valid_name(&plugin.id) {
                return invalid(format!(
                    "plugin id `{}` is not allowed: use lower-case letters, digits, `-` and `_`",
                    plugin.id
                ));
            }
            if !ids.insert(plugin.id.as_str()) {
                return invalid(format!(
                    "plugin id `{}` appears twice; ids must be unique in a pack",
                    plugin.id
                ));
            }
            if !is_contained_path(&plugin.component) {
                return invalid(format!(
                    "plugin `{}`: component path `{}` must be relative and stay inside the pack directory",
                    plugin.id, plugin.component
                ));
            }
            let mut seen = BTreeSet::new();
            if let Some(dup) = plugin.capabilities.iter().find(|c| !seen.insert(**c)) {
                return invalid(format!(
                    "plugin `{}`: capability `{dup}` is requested twice",
                    plugin.id
                ));
            }
        }
        for case in &self.tests {
            for path in [&case.events, &case.expected] {
                if !is_contained_path(path) {
                    return invalid(format!(
                        "test `{}`: path `{path}` must be relative and stay inside the pack directory",
                        case.name
                    ));
                }
            }
        }
        Ok(())
    }
}

impl PluginManifest {
    /// The config table rendered as `init` receives it: sorted by key,
    /// strings verbatim, every other value as JSON text.
    pub fn config_entries(&self) -> Vec<(String, String)> {
        // `toml::Table` is a BTreeMap by default, so iteration is sorted.
        self.config
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    toml::Value::String(s) => s.clone(),
                    other => serde_json::to_string(other).unwrap_or_default(),
                };
                (k.clone(), text)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "p"
version = "1"
[[plugins]]
id = "a"
component = "a.wasm"
world = "detector"
capabilities = ["log"]
config = { list = ["x", "y"], n = 3, s = "text" }
"#;

    #[test]
    fn config_values_render_as_text_or_json() {
        let m = PackManifest::parse("pack.toml", GOOD).expect("valid");
        assert_eq!(
            m.plugins[0].config_entries(),
            vec![
                ("list".to_owned(), r#"["x","y"]"#.to_owned()),
                ("n".to_owned(), "3".to_owned()),
                ("s".to_owned(), "text".to_owned())
            ]
        );
    }

    #[test]
    fn a_typo_in_a_field_name_is_an_error_with_its_line() {
        let text = GOOD.replace("capabilities", "capabilties");
        let err = PackManifest::parse("pack.toml", &text)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("pack.toml:"), "{err}");
        assert!(err.contains("capabilties"), "{err}");
        assert!(err.contains("line 8"), "{err}");
    }

    #[test]
    fn unknown_capabilities_and_worlds_are_rejected() {
        let err = PackManifest::parse("pack.toml", &GOOD.replace(r#"["log"]"#, r#"["network"]"#))
            .unwrap_err();
        assert!(err.to_string().contains("network"), "{err}");
        let err = PackManifest::parse("pack.toml", &GOOD.replace("\"detector\"", "\"detectr\""))
            .unwrap_err();
        assert!(err.to_string().contains("detectr"), "{err}");
    }

    #[test]
    fn paths_escaping_the_pack_and_unsafe_names_are_rejected() {
        for bad in ["../a.wasm", "/etc/passwd", ""] {
            let err = PackManifest::parse(
                "pack.toml",
                &GOOD.replace("\"a.wasm\"", &format!("{bad:?}")),
            )
            .unwrap_err();
            assert!(err.to_string().contains("inside the pack"), "{bad}: {err}");
        }
        let err = PackManifest::parse("pack.toml", &GOOD.replace("id = \"a\"", "id = \"../x\""))
            .unwrap_err();
        assert!(err.to_string().contains("plugin id"), "{err}");
    }
}
