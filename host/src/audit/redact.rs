//! Redaction: event fields dropped or hashed before anything is written.
//!
//! A field listed in the policy (`[audit.redact]`, dotted paths such as
//! `Event.EventData.User`) is removed from the recorded event (`drop`) or
//! replaced by `sha256:<16 hex>` of its value (`hash`). Because a value
//! also travels into findings, log lines and host-call arguments (a state
//! key `fail/alice`), every occurrence of a redacted value of at least
//! [`MIN_SCRUB_BYTES`] bytes is replaced by the same token anywhere in the
//! batch's records: the value never reaches the file. Hashes are unsalted
//! so the same user links across records; they are pseudonyms, not secrets.

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Values shorter than this are removed from the event but not searched
/// for elsewhere (a one-letter value would erase text everywhere).
pub const MIN_SCRUB_BYTES: usize = 3;

/// Token standing for a dropped value elsewhere in a record.
pub const DROPPED: &str = "[redacted]";

/// Which event fields to drop or hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redaction {
    drop: Vec<Vec<String>>,
    hash: Vec<Vec<String>>,
}

/// Replacements collected from one batch's events.
#[derive(Debug, Clone, Default)]
pub struct Scrub {
    pairs: Vec<(String, String)>,
    /// Every needle of `pairs`, leftmost-longest (`alice.smith` before
    /// `alice`), built on first use after the last `add`; `None` if it
    /// cannot be built (then one replacement per needle).
    needles: std::sync::OnceLock<Option<AhoCorasick>>,
}

fn split(paths: &[String]) -> Vec<Vec<String>> {
    paths
        .iter()
        .map(|p| p.split('.').map(str::to_owned).collect())
        .collect()
}

/// `sha256:` and the first 16 hex digits of the value's hash.
pub fn hash_token(text: &str) -> String {
    format!(
        "sha256:{}",
        &hex::encode(Sha256::digest(text.as_bytes()))[..16]
    )
}

impl Redaction {
    /// Fields to drop and fields to hash, as dotted paths.
    pub fn new(drop: &[String], hash: &[String]) -> Self {
        Redaction {
            drop: split(drop),
            hash: split(hash),
        }
    }

    /// Whether nothing is redacted.
    pub fn is_empty(&self) -> bool {
        self.drop.is_empty() && self.hash.is_empty()
    }

    /// Redact `event` in place, adding what was removed to `scrub`.
    /// Returns whether anything changed.
    pub fn redact_event(&self, event: &mut Value, scrub: &mut Scrub) -> bool {
        let mut changed = false;
        for path in &self.drop {
            if let Some(old) = take(event, path, None) {
                scrub.add(text_of(&old), DROPPED.to_owned());
                changed = true;
            }
        }
        for path in &self.hash {
            let Some(current) = lookup(event, path) else {
                continue;
            };
            let text = text_of(current);
            let token = hash_token(&text);
            take(event, path, Some(Value::String(token.clone())));
            scrub.add(text, token);
            changed = true;
        }
        changed
    }
}

impl Scrub {
    fn add(&mut self, needle: String, token: String) {
        if needle.len() >= MIN_SCRUB_BYTES && !self.pairs.iter().any(|(n, _)| *n == needle) {
            self.pairs.push((needle, token));
            self.needles = std::sync::OnceLock::new();
        }
    }

    /// Whether there is nothing to replace.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Replace every redacted value inside every string and key of `value`.
    pub fn apply(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(s) => self.apply_str(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.apply(v)),
            Value::Object(map) => {
                let old = std::mem::take(map);
                *map = old
                    .into_iter()
                    .map(|(mut k, mut v)| {
                        self.apply_str(&mut k);
                        self.apply(&mut v);
                        (k, v)
                    })
                    .collect::<Map<String, Value>>();
            }
            _ => {}
        }
    }

    fn apply_str(&self, s: &mut String) {
        let needles = self.needles.get_or_init(|| {
            (AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest))
                .build(self.pairs.iter().map(|(n, _)| n))
                .ok()
        });
        match needles {
            Some(needles) => {
                if needles.is_match(s.as_str()) {
                    let tokens: Vec<&str> = self.pairs.iter().map(|(_, t)| t.as_str()).collect();
                    *s = needles.replace_all(s, &tokens);
                }
            }
            // Too many or too long needles for one automaton: one
            // replacement per needle, longest first.
            None => {
                let mut pairs: Vec<_> = self.pairs.iter().collect();
                pairs.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
                for (needle, token) in pairs {
                    if s.contains(needle.as_str()) {
                        *s = s.replace(needle.as_str(), token);
                    }
                }
            }
        }
    }
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn lookup<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, seg| match v {
        Value::Object(map) => map.get(seg),
        Value::Array(items) => items.get(seg.parse::<usize>().ok()?),
        _ => None,
    })
}

/// Remove the value at `path` (or replace it with `with`); returns the old value.
fn take(value: &mut Value, path: &[String], with: Option<Value>) -> Option<Value> {
    let (last, parents) = path.split_last()?;
    let mut parent = value;
    for seg in parents {
        parent = match parent {
            Value::Object(map) => map.get_mut(seg)?,
            Value::Array(items) => items.get_mut(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    let Value::Object(map) = parent else {
        return None;
    };
    match with {
        None => map.remove(last),
        Some(new) => map.get_mut(last).map(|slot| std::mem::replace(slot, new)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replacement_is_never_rewritten_by_a_shorter_needle() {
        let mut scrub = Scrub::default();
        scrub.add("alice.smith".into(), "sha256:0123".into());
        scrub.add("sha256".into(), "HASHED".into());
        let mut text = Value::String("user alice.smith, tool sha256".into());
        scrub.apply(&mut text);
        assert_eq!(text, "user sha256:0123, tool HASHED");
    }
    use serde_json::json;

    #[test]
    fn dropped_and_hashed_fields_vanish_from_the_event_and_from_other_text() {
        let redaction = Redaction::new(
            &["Event.EventData.IpAddress".into()],
            &["Event.EventData.TargetUserName".into()],
        );
        let mut event = json!({"Event": {"EventData": {
            "TargetUserName": "alice", "IpAddress": "10.1.2.3", "LogonType": 3}}});
        let mut scrub = Scrub::default();
        assert!(redaction.redact_event(&mut event, &mut scrub));
        let data = &event["Event"]["EventData"];
        assert!(data.get("IpAddress").is_none());
        assert_eq!(data["TargetUserName"], json!(hash_token("alice")));

        let mut finding = json!({"evidence": {"user": "alice", "source": "10.1.2.3"},
                                 "fail/alice": ["state key fail/alice"]});
        scrub.apply(&mut finding);
        let text = finding.to_string();
        assert!(
            !text.contains("alice") && !text.contains("10.1.2.3"),
            "{text}"
        );
        assert!(text.contains(DROPPED) && text.contains(&hash_token("alice")));
    }

    #[test]
    fn absent_fields_change_nothing() {
        let redaction = Redaction::new(&[], &["a.b".into()]);
        let mut event = json!({"a": 1});
        let mut scrub = Scrub::default();
        assert!(!redaction.redact_event(&mut event, &mut scrub));
        assert!(scrub.is_empty());
    }
}
