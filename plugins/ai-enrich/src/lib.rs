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
//! Real models do not always answer with the bare JSON object asked for:
//! the answer is looked for in fences and prose, keys and values are read
//! by meaning, and what is accepted is then validated strictly (see
//! `answer.rs`).
//!
//! The logic (request building, answer validation) is plain Rust tested
//! natively; only the export glue is Wasm-specific.

mod answer;

pub use answer::{Answer, parse_answer, status_reason};
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

// Services that honour `response_format` return bare JSON; for those that
// do not, the instruction says the same in words, and `parse_answer` still
// finds the object in fences or prose.
const INSTRUCTIONS: &str = "You are a SOC analyst. Given a detection finding as JSON, answer \
with exactly one JSON object and nothing else (no Markdown, no text before or after it), with \
these three keys: \"summary\": a string of at most 400 characters saying what happened and why \
it matters; \"techniques\": a list of MITRE ATT&CK technique ids such as \"T1059.001\" (ids \
only, no names; [] if none applies); \"priority\": one of \"low\", \"medium\", \"high\", \
\"immediate\".";

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

// The generated bindings and the export glue are `unsafe` ABI code.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, missing_docs, clippy::all)]
mod component {
    use std::sync::OnceLock;

    use super::{Config, FindingView, parse_answer, request_body, status_reason};

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
            let response =
                http::send(&request).map_err(|e| PluginError::Internal(http_error(e)))?;
            if response.status != 200 {
                return Err(PluginError::Internal(status_reason(
                    response.status,
                    &response.body,
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

    /// A reason for each `http` error that says what to look at next.
    fn http_error(error: http::Error) -> String {
        match error {
            http::Error::AccessDenied => "http access denied (origin, method or resolved \
                address not granted, or the capability revoked)"
                .into(),
            http::Error::RateLimited => "rate-limited (by the grant's requests_per_minute or \
                by the service's Retry-After)"
                .into(),
            http::Error::RequestTooLarge => {
                "request larger than the grant allows (max_request_bytes)".into()
            }
            http::Error::ResponseTooLarge => {
                "response larger than the grant allows (max_response_bytes)".into()
            }
            http::Error::Timeout => {
                "the service did not answer in time (the grant's timeout_ms or the \
                 plugin's deadline)"
                    .into()
            }
            http::Error::InvalidRequest(why) => format!("invalid request: {why}"),
            http::Error::ConnectionFailed(why) => {
                format!("connection to the service failed: {why}")
            }
        }
    }

    export!(AiEnrich);
}

#[cfg(test)]
mod tests {
    use super::*;

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
