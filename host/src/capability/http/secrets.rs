//! Secret header values: `${NAME}` templates in the grant, filled from
//! `[secrets] file` or the environment, never recorded or shown.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aho_corasick::{AhoCorasick, MatchKind};

use super::origin::Origin;

/// A header the host sets on requests to one origin. `Debug` shows the
/// template, never the value.
#[derive(Clone)]
pub(super) struct SecretHeader {
    pub(super) origin: Origin,
    /// Lower case.
    pub(super) name: String,
    /// As written in the policy, for the record.
    pub(super) template: String,
    /// With secrets substituted; never recorded.
    pub(super) value: String,
}

impl std::fmt::Debug for SecretHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretHeader")
            .field("origin", &self.origin)
            .field("name", &self.name)
            .field("template", &self.template)
            .finish_non_exhaustive()
    }
}

/// Secret values, kept only to scrub them; `Debug` shows the names.
#[derive(Default)]
pub(super) struct Secrets {
    names: Vec<String>,
    /// Every value, leftmost-longest: a secret containing another is
    /// replaced whole. `None` when there is no secret.
    values: Option<AhoCorasick>,
    /// `[secret:NAME]`, in the order of `values`' patterns.
    tokens: Vec<String>,
}

impl Secrets {
    /// The `(value, NAME)` of every secret used; empty values are ignored.
    pub(super) fn new(used: Vec<(String, String)>) -> Result<Secrets, String> {
        let used: Vec<_> = used.into_iter().filter(|(v, _)| !v.is_empty()).collect();
        if used.is_empty() {
            return Ok(Secrets::default());
        }
        let values = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(used.iter().map(|(v, _)| v))
            .map_err(|e| format!("secret values: {e}"))?;
        Ok(Secrets {
            tokens: used.iter().map(|(_, n)| format!("[secret:{n}]")).collect(),
            names: used.into_iter().map(|(_, n)| n).collect(),
            values: Some(values),
        })
    }

    /// Whether `text` holds a secret value.
    pub(super) fn found_in(&self, text: &str) -> bool {
        self.values.as_ref().is_some_and(|v| v.is_match(text))
    }

    /// `text` with every secret value replaced by `[secret:NAME]`.
    pub(super) fn scrub(&self, text: &str) -> String {
        match &self.values {
            Some(values) => values.replace_all(text, &self.tokens),
            None => text.to_owned(),
        }
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.names).finish()
    }
}

/// Where `${NAME}` secrets come from: `[secrets] file`, then the environment.
/// `Debug` shows where, never the values.
#[derive(Default)]
pub struct SecretSource {
    file: Option<(PathBuf, BTreeMap<String, String>)>,
    /// Replay: no secret is read; every `${NAME}` becomes `[secret:NAME]`.
    placeholders: bool,
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSource")
            .field("file", &self.file.as_ref().map(|(path, _)| path))
            .field("placeholders", &self.placeholders)
            .finish()
    }
}

impl SecretSource {
    /// Read the policy's `[secrets] file`, if set.
    pub fn from_file(path: Option<&Path>) -> Result<SecretSource, String> {
        let Some(path) = path else {
            return Ok(SecretSource::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("[secrets] file {}: {e}", path.display()))?;
        let values: BTreeMap<String, String> = toml::from_str(&text).map_err(|e| {
            format!(
                "[secrets] file {}: {} (expected `NAME = \"value\"` lines)",
                path.display(),
                e.to_string().trim_end()
            )
        })?;
        Ok(SecretSource {
            file: Some((path.to_path_buf(), values)),
            placeholders: false,
        })
    }

    /// For replay, which never sends a request: secrets are not needed and
    /// not read.
    pub fn placeholders() -> SecretSource {
        SecretSource {
            file: None,
            placeholders: true,
        }
    }

    pub(super) fn get(&self, name: &str) -> Result<String, String> {
        if self.placeholders {
            return Ok(format!("[secret:{name}]"));
        }
        if let Some((_, values)) = &self.file
            && let Some(v) = values.get(name)
        {
            return Ok(v.clone());
        }
        std::env::var(name).map_err(|_| match &self.file {
            Some((path, _)) => format!(
                "secret `{name}` is neither in {} nor an environment variable",
                path.display()
            ),
            None => {
                format!("secret `{name}` is not set: export {name}=... or name a `[secrets] file`")
            }
        })
    }
}

/// Split a header template into literal text and `${NAME}` references.
pub(super) fn template_parts(template: &str) -> Result<Vec<(bool, &str)>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        parts.push((false, &rest[..start]));
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("header value `{template}`: `${{` without `}}`"))?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "header value `{template}`: `${{{name}}}` is not a secret name (letters, digits, _)"
            ));
        }
        parts.push((true, name));
        rest = &after[end + 1..];
    }
    parts.push((false, rest));
    Ok(parts)
}
