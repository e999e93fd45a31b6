//! `ai-enrich`: an enricher that asks an OpenAI-compatible chat-completions
//! endpoint about each finding and attaches a short analyst summary, the
//! likely ATT&CK techniques and a triage priority.
//!
//! Config (`pack.toml`):
//! - `base_url` (required): e.g. `https://api.openai.com/v1`; the request
//!   goes to `<base_url>/chat/completions`;
//! - `model` (required): the model name, also reported as the source.
//!
//! The plugin never holds an API key: the operator's `http` grant binds
//! `Authorization` to a secret the host injects. Everything that can go
//! wrong (denied, revoked, rate-limited, timed out, HTTP error, an answer
//! that is not the JSON asked for) is returned as an error naming the
//! cause; the host then emits the finding without enrichment, with that
//! reason, and never drops it.
//!
//! The logic (request building, answer validation) is plain Rust tested
//! natively; only the export glue is Wasm-specific.

use serde_json::{Value, json};

/// Plugin configuration, from `init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Chat-completions URL.
    pub url: String,
    /// Model name.
    pub model: String,
}

impl Config {
    /// Read `base_url` and `model` from the config entries.
    pub fn from_entries(entries: &[(String, String)]) -> Result<Config, String> {
        let get = |key: &str| {
            entries
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("`{key}` is required"))
        };
        let base = get("base_url")?;
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(format!("`base_url` = `{base}` must be an http(s) URL"));
        }
        Ok(Config {
            url: format!("{}/chat/completions", base.trim_end_matches('/')),
            model: get("model")?,
        })
    }
}

/// The finding as the model sees it.
#[derive(Debug, Clone, Default)]
pub struct FindingView {
    /// Rule id.
    pub rule_id: String,
    /// Title.
    pub title: String,
    /// Severity name.
    pub severity: String,
    /// Detector's techniques.
    pub techniques: Vec<String>,
    /// Evidence pairs.
    pub evidence: Vec<(String, String)>,
}

const INSTRUCTIONS: &str = "You are a SOC analyst. Given a detection finding as JSON, answer \
with one JSON object and nothing else: {\"summary\": string (at most 400 characters, what \
happened and why it matters), \"techniques\": [MITRE ATT&CK technique ids like \"T1059.001\"], \
\"priority\": one of \"low\", \"medium\", \"high\", \"immediate\"}.";

/// The chat-completions request body for `finding`.
pub fn request_body(config: &Config, finding: &FindingView) -> Vec<u8> {
    let evidence: serde_json::Map<String, Value> = finding
        .evidence
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let finding = json!({
        "rule_id": finding.rule_id,
        "title": finding.title,
        "severity": finding.severity,
        "techniques": finding.techniques,
        "evidence": evidence,
    });
    json!({
        "model": config.model,
        "temperature": 0,
        "response_format": { "type": "json_object" },
        "messages": [
            { "role": "system", "content": INSTRUCTIONS },
            { "role": "user", "content": finding.to_string() },
        ],
    })
    .to_string()
    .into_bytes()
}

/// A validated answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Analyst summary.
    pub summary: String,
    /// ATT&CK technique ids.
    pub techniques: Vec<String>,
    /// `low`, `medium`, `high` or `immediate`.
    pub priority: String,
}

const MAX_SUMMARY_CHARS: usize = 1000;

fn is_technique(id: &str) -> bool {
    let b = id.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    match b.len() {
        5 => b[0] == b'T' && digits(&b[1..]),
        9 => b[0] == b'T' && digits(&b[1..5]) && b[5] == b'.' && digits(&b[6..]),
        _ => false,
    }
}

/// Validate a chat-completions response body: the model's message must be
/// the JSON object asked for. Every rejection says what was wrong.
pub fn parse_answer(body: &[u8]) -> Result<Answer, String> {
    let response: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the service's response is not JSON: {e}"))?;
    let content = response
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .ok_or("the response has no choices[0].message.content string")?;
    let answer: Value = serde_json::from_str(content.trim())
        .map_err(|e| format!("the model's answer is not JSON: {e}"))?;
    let summary = answer
        .get("summary")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or("the model's answer has no non-empty `summary` string")?;
    if summary.chars().count() > MAX_SUMMARY_CHARS {
        return Err(format!(
            "the model's summary is longer than {MAX_SUMMARY_CHARS} characters"
        ));
    }
    let techniques = answer
        .get("techniques")
        .and_then(Value::as_array)
        .ok_or("the model's answer has no `techniques` list")?
        .iter()
        .map(|t| {
            t.as_str()
                .filter(|t| is_technique(t))
                .map(str::to_owned)
                .ok_or_else(|| format!("`{t}` is not an ATT&CK technique id"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let priority = answer
        .get("priority")
        .and_then(Value::as_str)
        .filter(|p| ["low", "medium", "high", "immediate"].contains(p))
        .ok_or("the model's `priority` is not one of low, medium, high, immediate")?;
    Ok(Answer {
        summary: summary.to_owned(),
        techniques,
        priority: priority.to_owned(),
    })
}

// The generated bindings and the export glue are `unsafe` ABI code.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, missing_docs, clippy::all)]
mod component {
    use std::sync::OnceLock;

    use super::{Config, FindingView, parse_answer, request_body};

    wit_bindgen::generate!({
        path: "../../wit",
        world: "enricher",
        generate_all,
    });

    use vigil::plugin::http;
    // `Enrichment`, `Finding` and `PluginError` come from the world's `use`.
    use vigil::plugin::types::{Priority, Severity};

    /// Set by `init`; every instance serves one call.
    static CONFIG: OnceLock<Config> = OnceLock::new();

    struct AiEnrich;

    impl Guest for AiEnrich {
        fn init(config: Vec<(String, String)>) -> Result<(), PluginError> {
            let config = Config::from_entries(&config).map_err(PluginError::InvalidConfig)?;
            let _ = CONFIG.set(config);
            Ok(())
        }

        fn enrich(finding: Finding) -> Result<Enrichment, PluginError> {
            let config = CONFIG
                .get()
                .ok_or_else(|| PluginError::Internal("enrich before init".into()))?;
            let view = FindingView {
                rule_id: finding.rule_id,
                title: finding.title,
                severity: match finding.severity {
                    Severity::Info => "info",
                    Severity::Low => "low",
                    Severity::Medium => "medium",
                    Severity::High => "high",
                    Severity::Critical => "critical",
                }
                .into(),
                techniques: finding.techniques,
                evidence: finding
                    .evidence
                    .into_iter()
                    .map(|e| (e.key, e.value))
                    .collect(),
            };
            let request = http::Request {
                method: "POST".into(),
                url: config.url.clone(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: request_body(config, &view),
            };
            let response = http::send(&request).map_err(|e| {
                PluginError::Internal(match e {
                    http::Error::AccessDenied => {
                        "http access denied (not granted or revoked)".into()
                    }
                    http::Error::RateLimited => "http rate limit reached".into(),
                    http::Error::RequestTooLarge => "request larger than the grant allows".into(),
                    http::Error::ResponseTooLarge => "response larger than the grant allows".into(),
                    http::Error::Timeout => "the service did not answer in time".into(),
                    http::Error::InvalidRequest(why) => format!("invalid request: {why}"),
                    http::Error::ConnectionFailed(why) => format!("connection failed: {why}"),
                })
            })?;
            if response.status != 200 {
                return Err(PluginError::Internal(format!(
                    "the service answered HTTP {}",
                    response.status
                )));
            }
            let answer = parse_answer(&response.body).map_err(PluginError::Internal)?;
            Ok(Enrichment {
                summary: answer.summary,
                techniques: answer.techniques,
                priority: match answer.priority.as_str() {
                    "immediate" => Priority::Immediate,
                    "high" => Priority::High,
                    "medium" => Priority::Medium,
                    _ => Priority::Low,
                },
                source: config.model.clone(),
            })
        }
    }

    export!(AiEnrich);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(content: &str) -> Vec<u8> {
        json!({ "choices": [ { "message": { "role": "assistant", "content": content } } ] })
            .to_string()
            .into_bytes()
    }

    #[test]
    fn a_well_formed_answer_is_accepted() {
        let got = parse_answer(&answer(
            r#"{"summary":"Encoded PowerShell launched by Word.","techniques":["T1059.001","T1027"],"priority":"high"}"#,
        ))
        .expect("valid");
        assert_eq!(got.techniques, ["T1059.001", "T1027"]);
        assert_eq!(got.priority, "high");
    }

    #[test]
    fn malformed_answers_are_rejected_with_the_reason() {
        for (content, says) in [
            ("not json", "not JSON"),
            (r#"{"techniques":[],"priority":"low"}"#, "summary"),
            (
                r#"{"summary":"x","techniques":["rm -rf"],"priority":"low"}"#,
                "technique id",
            ),
            (
                r#"{"summary":"x","techniques":[],"priority":"urgent!!"}"#,
                "priority",
            ),
        ] {
            let err = parse_answer(&answer(content)).unwrap_err();
            assert!(err.contains(says), "{content}: {err}");
        }
        let err = parse_answer(b"<html>").unwrap_err();
        assert!(err.contains("not JSON"), "{err}");
        let err = parse_answer(b"{\"choices\":[]}").unwrap_err();
        assert!(err.contains("choices[0]"), "{err}");
    }

    #[test]
    fn config_needs_an_http_base_url_and_a_model() {
        let entries = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect()
        };
        let c = Config::from_entries(&entries(&[
            ("base_url", "http://127.0.0.1:9/v1/"),
            ("model", "m"),
        ]))
        .expect("valid");
        assert_eq!(c.url, "http://127.0.0.1:9/v1/chat/completions");
        assert!(
            Config::from_entries(&entries(&[("model", "m")]))
                .unwrap_err()
                .contains("base_url")
        );
        assert!(
            Config::from_entries(&entries(&[("base_url", "file:///etc"), ("model", "m")]))
                .unwrap_err()
                .contains("http")
        );
    }

    #[test]
    fn the_request_carries_the_finding_and_no_credentials() {
        let config = Config {
            url: "https://x/v1/chat/completions".into(),
            model: "m".into(),
        };
        let body = request_body(
            &config,
            &FindingView {
                rule_id: "vigil.x".into(),
                evidence: vec![("CommandLine".into(), "powershell -enc AAAA".into())],
                ..FindingView::default()
            },
        );
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["model"], "m");
        let user = v["messages"][1]["content"].as_str().expect("content");
        assert!(user.contains("powershell -enc AAAA") && user.contains("vigil.x"));
        assert!(
            !String::from_utf8_lossy(&body)
                .to_lowercase()
                .contains("authorization")
        );
    }
}
