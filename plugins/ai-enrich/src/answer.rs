//! Reading the model's answer out of a chat-completions response.
//!
//! The request asks for one JSON object, and services that honour
//! `response_format` give exactly that. Many do not: real models wrap the
//! object in a Markdown fence, put prose around it, pick near-synonym keys,
//! spell technique ids loosely, get cut off, or refuse. So the object is
//! looked for rather than assumed, keys are matched by meaning, and values
//! are normalised — but what is finally accepted is validated strictly, and
//! every rejection says why and quotes the start of what came back.
//!
//! Everything here is service-controlled input.

use serde_json::{Map, Value};

/// A validated answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Analyst summary.
    pub summary: String,
    /// ATT&CK technique ids, normalised (`T1059.001`), without duplicates.
    pub techniques: Vec<String>,
    /// `low`, `medium`, `high` or `immediate`.
    pub priority: String,
}

const MAX_SUMMARY_CHARS: usize = 1000;

/// Longest excerpt of an answer quoted in a reason, in characters.
const EXCERPT_CHARS: usize = 120;

/// At most this many `{` are tried as the start of the object: each try may
/// scan the rest of the text, and the text is the service's.
const MAX_OBJECT_STARTS: usize = 64;

/// Keys accepted for each field, compared after [`key_name`].
const SUMMARY_KEYS: &[&str] = &["summary", "analysis", "description", "explanation"];
const TECHNIQUE_KEYS: &[&str] = &[
    "techniques",
    "mitre_techniques",
    "attack_techniques",
    "mitre",
    "ttps",
    "technique_ids",
];
const PRIORITY_KEYS: &[&str] = &["priority", "triage_priority", "severity", "urgency"];

/// Keys naming the id in a technique given as an object
/// (`{"id": "T1059.001", "name": "PowerShell"}`).
const TECHNIQUE_ID_KEYS: &[&str] = &["id", "technique_id", "technique"];

/// Entries that mean "no technique" rather than an invalid one.
const NO_TECHNIQUE: &[&str] = &["none", "n/a", "na", "unknown", "null", "-"];

/// Validate a chat-completions response body and read the model's answer
/// from it. Every rejection says what was wrong and quotes what came back.
pub fn parse_answer(body: &[u8]) -> Result<Answer, String> {
    let response: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the service's response is not JSON ({e}): \"{}\"",
            excerpt(&String::from_utf8_lossy(body))
        )
    })?;
    let choice = response.pointer("/choices/0").ok_or_else(|| {
        format!(
            "the response has no choices[0]: \"{}\"",
            excerpt(&response.to_string())
        )
    })?;
    let cut_off = choice.get("finish_reason").and_then(Value::as_str) == Some("length");
    let message = choice.get("message").ok_or_else(|| {
        format!(
            "the response has no choices[0].message: \"{}\"",
            excerpt(&choice.to_string())
        )
    })?;
    let content = message_text(message)?;
    let fail = |reason: &str| format!("{reason}: \"{}\"", excerpt(&content));

    if content.trim().is_empty() {
        if let Some(refusal) = message.get("refusal").and_then(Value::as_str) {
            return Err(format!("the model refused: \"{}\"", excerpt(refusal)));
        }
        return Err(if cut_off {
            "the model's answer was cut off (finish_reason \"length\") before it began".into()
        } else {
            "the model's answer is empty".into()
        });
    }

    let scan = scan_objects(&content);
    let object = match scan.best {
        Some((object, 3)) => object,
        _ if cut_off => {
            return Err(fail(
                "the model's answer was cut off (finish_reason \"length\") before its JSON object was complete",
            ));
        }
        _ if scan.unclosed => {
            return Err(fail(
                "the JSON object in the model's answer is not closed (truncated?)",
            ));
        }
        Some((object, _)) => object,
        None => {
            return Err(fail(
                "the model's answer contains no JSON object (a refusal, or prose only)",
            ));
        }
    };
    read_fields(&object).map_err(|reason| fail(&reason))
}

/// Why a response whose status is not 200 gives no answer, quoting the
/// start of its body (services put the cause there: a bad key, an unknown
/// model, a quota).
pub fn status_reason(status: u16, body: &[u8]) -> String {
    let what = match status {
        401 | 403 => " (the service refused the credentials)",
        404 => " (check `base_url` and `model`)",
        429 => " (the service's rate limit or quota)",
        500..=599 => " (the service failed)",
        _ => "",
    };
    let body = String::from_utf8_lossy(body);
    if body.trim().is_empty() {
        format!("the service answered HTTP {status}{what}")
    } else {
        format!(
            "the service answered HTTP {status}{what}: \"{}\"",
            excerpt(&body)
        )
    }
}

/// The text of the message: `content` as a string, or the text parts of
/// `content` given as a list of parts (`[{"type": "text", "text": "..."}]`).
/// A missing or `null` content is empty (a refusal may be elsewhere).
fn message_text(message: &Value) -> Result<String, String> {
    let text = match message.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| match part {
                Value::String(text) => Some(text.as_str()),
                part => part.get("text").and_then(Value::as_str),
            })
            .collect(),
        Some(other) => {
            return Err(format!(
                "choices[0].message.content is neither text nor a list of parts: \"{}\"",
                excerpt(&other.to_string())
            ));
        }
    };
    // Some services encode the object a second time, as a JSON string.
    match serde_json::from_str::<Value>(text.trim()) {
        Ok(Value::String(inner)) => Ok(inner),
        _ => Ok(text),
    }
}

/// What [`scan_objects`] found.
#[derive(Default)]
struct Scan {
    /// The object with the most answer fields, the first of equals, and
    /// how many of the three fields it has.
    best: Option<(Map<String, Value>, usize)>,
    /// Some `{` was never closed.
    unclosed: bool,
}

/// Look for JSON objects in `text`: a bare object, one inside a Markdown
/// fence, or one in prose are all just an object somewhere in the text.
/// Each `{` (up to [`MAX_OBJECT_STARTS`]) is tried as a start; a balanced
/// span that parses is a candidate, and the search goes on after it. A
/// model that echoes the finding before answering gives two candidates;
/// the one with more answer fields wins.
fn scan_objects(text: &str) -> Scan {
    let mut scan = Scan::default();
    let mut from = 0;
    for _ in 0..MAX_OBJECT_STARTS {
        let Some(offset) = text[from..].find('{') else {
            break;
        };
        let start = from + offset;
        let Some(end) = object_end(text, start) else {
            scan.unclosed = true;
            from = start + 1;
            continue;
        };
        let Ok(Value::Object(object)) = serde_json::from_str(&text[start..end]) else {
            from = start + 1;
            continue;
        };
        let fields = [SUMMARY_KEYS, TECHNIQUE_KEYS, PRIORITY_KEYS]
            .into_iter()
            .filter(|names| field(&object, names).is_some())
            .count();
        if scan.best.as_ref().is_none_or(|(_, best)| fields > *best) {
            scan.best = Some((object, fields));
        }
        if fields == 3 {
            break;
        }
        from = end;
    }
    scan
}

/// The byte index just past the `}` that closes the `{` at `start`, or
/// `None` if it is never closed. Braces inside strings do not count, and a
/// backslash escapes the next character of a string. Braces, quotes and
/// backslashes are ASCII, so a byte scan never splits a UTF-8 character.
fn object_end(text: &str, start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, byte) in text.bytes().enumerate().skip(start) {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// A key as compared: lower case, `-` and spaces as `_`.
fn key_name(key: &str) -> String {
    key.trim().to_lowercase().replace(['-', ' '], "_")
}

/// The first of `names` present in `object` (in the order of `names`), with
/// the key as the model spelled it.
fn field<'a>(object: &'a Map<String, Value>, names: &[&str]) -> Option<(&'a str, &'a Value)> {
    names.iter().find_map(|name| {
        object
            .iter()
            .find(|(key, _)| key_name(key) == *name)
            .map(|(key, value)| (key.as_str(), value))
    })
}

/// Read and validate the three fields of the answer object.
fn read_fields(object: &Map<String, Value>) -> Result<Answer, String> {
    let missing = |what: &str, names: &[&str]| {
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        format!(
            "the model's answer has no {what} (looked for {}; it has {})",
            names.join(", "),
            if keys.is_empty() {
                "no keys".to_owned()
            } else {
                keys.join(", ")
            }
        )
    };

    let (key, summary) =
        field(object, SUMMARY_KEYS).ok_or_else(|| missing("summary", SUMMARY_KEYS))?;
    let summary = summary
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("the model's `{key}` is not a non-empty string"))?;
    if summary.chars().count() > MAX_SUMMARY_CHARS {
        return Err(format!(
            "the model's `{key}` is longer than {MAX_SUMMARY_CHARS} characters"
        ));
    }

    let (key, given) =
        field(object, TECHNIQUE_KEYS).ok_or_else(|| missing("techniques", TECHNIQUE_KEYS))?;
    let techniques = techniques(given).map_err(|invalid| {
        format!(
            "none of the model's `{key}` is an ATT&CK technique id (T1234 or T1234.567): {}",
            invalid.join(", ")
        )
    })?;
    let techniques = techniques.ok_or_else(|| {
        format!("the model's `{key}` is neither a list nor a comma-separated string")
    })?;

    let (key, given) =
        field(object, PRIORITY_KEYS).ok_or_else(|| missing("priority", PRIORITY_KEYS))?;
    let priority = given.as_str().and_then(priority).ok_or_else(|| {
        format!(
            "the model's `{key}` = {given} is not one of low, medium, high, immediate \
             (critical, urgent, moderate, info, informational are also understood)"
        )
    })?;

    Ok(Answer {
        summary: summary.to_owned(),
        techniques,
        priority: priority.to_owned(),
    })
}

/// The valid technique ids in `given` (a list, a comma-separated string, or
/// `null`), in order and without duplicates; entries that hold no valid id
/// are dropped. `Ok(None)` if `given` has another type; `Err` with the
/// entries as given if there were some and none holds a valid id.
fn techniques(given: &Value) -> Result<Option<Vec<String>>, Vec<String>> {
    let entries: Vec<String> = match given {
        Value::Null => Vec::new(),
        Value::String(list) => list.split([',', ';', '\n']).map(str::to_owned).collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(entry) => entry.clone(),
                Value::Object(entry) => match field(entry, TECHNIQUE_ID_KEYS) {
                    Some((_, Value::String(id))) => id.clone(),
                    _ => item.to_string(),
                },
                other => other.to_string(),
            })
            .collect(),
        _ => return Ok(None),
    };
    let entries: Vec<String> = entries
        .into_iter()
        .map(|entry| entry.trim().to_owned())
        .filter(|entry| !entry.is_empty() && !NO_TECHNIQUE.contains(&entry.to_lowercase().as_str()))
        .collect();
    let mut ids: Vec<String> = Vec::new();
    for id in entries.iter().flat_map(|entry| technique_ids(entry)) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.is_empty() && !entries.is_empty() {
        return Err(entries
            .iter()
            .map(|entry| format!("\"{}\"", excerpt(entry)))
            .collect());
    }
    Ok(Some(ids))
}

/// The technique ids mentioned in one entry: `"T1059.001 - PowerShell"`,
/// `"t1059.001"` and `"PowerShell (T1059.001)"` all give `T1059.001`. Words
/// are split at anything but ASCII letters, digits and `.`, upper-cased and
/// stripped of a trailing `.`; only words that are exactly an id count.
fn technique_ids(entry: &str) -> impl Iterator<Item = String> + '_ {
    entry
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
        .map(|word| word.trim_end_matches('.').to_ascii_uppercase())
        .filter(|word| is_technique(word))
}

/// `T` and four digits, optionally `.` and three digits.
fn is_technique(id: &str) -> bool {
    let b = id.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    match b.len() {
        5 => b[0] == b'T' && digits(&b[1..]),
        9 => b[0] == b'T' && digits(&b[1..5]) && b[5] == b'.' && digits(&b[6..]),
        _ => false,
    }
}

/// The triage priority a model's word means, if any.
fn priority(word: &str) -> Option<&'static str> {
    match word.trim().to_lowercase().as_str() {
        "low" | "info" | "informational" => Some("low"),
        "medium" | "moderate" => Some("medium"),
        "high" => Some("high"),
        "immediate" | "critical" | "urgent" => Some("immediate"),
        _ => None,
    }
}

/// The start of `text` for a reason: trimmed, control and other
/// unprintable characters escaped (quotes and backslashes are left as they
/// are, so JSON stays readable), at most [`EXCERPT_CHARS`] characters,
/// ending in `…` if cut. An escape sequence is never cut in half.
fn excerpt(text: &str) -> String {
    let mut out = String::new();
    let mut chars = 0;
    // `out.len()` when it last had room left for the `…`.
    let mut room_for_mark = 0;
    for c in text.trim().chars() {
        let len = if matches!(c, '\'' | '"' | '\\') {
            1
        } else {
            c.escape_debug().len()
        };
        if chars + len > EXCERPT_CHARS {
            out.truncate(room_for_mark);
            out.push('…');
            return out;
        }
        if len == 1 {
            out.push(c);
        } else {
            out.extend(c.escape_debug());
        }
        chars += len;
        if chars < EXCERPT_CHARS {
            room_for_mark = out.len();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A response whose message content is `content` (a string or parts).
    fn response(content: Value, finish_reason: &str) -> Vec<u8> {
        json!({ "choices": [ {
            "message": { "role": "assistant", "content": content },
            "finish_reason": finish_reason,
        } ] })
        .to_string()
        .into_bytes()
    }

    fn answer(content: &str) -> Vec<u8> {
        response(Value::String(content.into()), "stop")
    }

    const OBJECT: &str = r#"{"summary":"Encoded PowerShell launched by Word.","techniques":["T1059.001","T1027"],"priority":"high"}"#;

    fn assert_enriched(got: Result<Answer, String>) {
        let got = got.expect("enriched");
        assert_eq!(got.summary, "Encoded PowerShell launched by Word.");
        assert_eq!(got.techniques, ["T1059.001", "T1027"]);
        assert_eq!(got.priority, "high");
    }

    /// The reason of a failed answer; it must quote what came back.
    fn reason(body: &[u8], says: &str, quotes: &str) -> String {
        let err = parse_answer(body).expect_err("must fail");
        assert!(err.contains(says), "wanted {says:?} in: {err}");
        assert!(err.contains(quotes), "wanted excerpt {quotes:?} in: {err}");
        err
    }

    #[test]
    fn a_bare_object_enriches() {
        assert_enriched(parse_answer(&answer(OBJECT)));
    }

    #[test]
    fn an_object_in_a_json_fence_enriches() {
        assert_enriched(parse_answer(&answer(&format!("```json\n{OBJECT}\n```"))));
        assert_enriched(parse_answer(&answer(&format!("```\n{OBJECT}\n```\n"))));
    }

    #[test]
    fn an_object_wrapped_in_prose_enriches() {
        let content = format!(
            "Sure! Here is my analysis of the {{suspicious}} finding:\n\n```json\n{OBJECT}\n```\n\nLet me know if you need more."
        );
        assert_enriched(parse_answer(&answer(&content)));
        // Braces and quotes inside strings do not end the object.
        let tricky = r#"Answer: {"summary":"Encoded PowerShell launched by Word.","note":"a } and a \" and a {","techniques":["T1059.001","T1027"],"priority":"high"} -- done {"#;
        assert_enriched(parse_answer(&answer(tricky)));
    }

    #[test]
    fn an_echoed_finding_before_the_answer_does_not_hide_it() {
        let content = format!(
            "The finding {{\"rule_id\":\"vigil.x\",\"severity\":\"high\",\"techniques\":[\"T1059\"]}} means:\n{OBJECT}"
        );
        assert_enriched(parse_answer(&answer(&content)));
    }

    #[test]
    fn synonym_keys_enrich() {
        assert_enriched(parse_answer(&answer(
            r#"{"analysis":"Encoded PowerShell launched by Word.","mitre_techniques":["T1059.001","T1027"],"triage_priority":"high"}"#,
        )));
        assert_enriched(parse_answer(&answer(
            r#"{"explanation":"Encoded PowerShell launched by Word.","ttps":"T1059.001, T1027","urgency":"High"}"#,
        )));
        let got = parse_answer(&answer(
            r#"{"description":"d","attack-techniques":[],"severity":"critical"}"#,
        ))
        .expect("enriched");
        assert_eq!(got.priority, "immediate");
        assert!(got.techniques.is_empty());
    }

    #[test]
    fn uppercase_keys_and_values_enrich() {
        assert_enriched(parse_answer(&answer(
            r#"{"SUMMARY":"Encoded PowerShell launched by Word.","Techniques":["T1059.001","T1027"],"PRIORITY":"HIGH"}"#,
        )));
    }

    #[test]
    fn content_given_as_a_list_of_parts_enriches() {
        let parts = json!([
            { "type": "text", "text": "```json\n" },
            { "type": "text", "text": OBJECT },
            { "type": "text", "text": "\n```" },
        ]);
        assert_enriched(parse_answer(&response(parts, "stop")));
    }

    #[test]
    fn an_object_encoded_as_a_json_string_enriches() {
        let double = Value::String(OBJECT.into()).to_string();
        assert_enriched(parse_answer(&answer(&double)));
    }

    #[test]
    fn technique_entries_normalise_to_their_ids() {
        let got = parse_answer(&answer(
            r#"{"summary":"s","mitre":["T1059.001 - PowerShell","t1027","Obfuscated Files (T1027)",{"id":"T1105","name":"Ingress Tool Transfer"},"T1566.001.","Phishing","T12345","none"],"priority":"medium"}"#,
        ))
        .expect("enriched");
        assert_eq!(got.techniques, ["T1059.001", "T1027", "T1105", "T1566.001"]);
        let got = parse_answer(&answer(
            r#"{"summary":"s","technique_ids":"T1059.001 (PowerShell); T1027","priority":"low"}"#,
        ))
        .expect("enriched");
        assert_eq!(got.techniques, ["T1059.001", "T1027"]);
    }

    #[test]
    fn priority_words_map_to_the_four_priorities() {
        for (word, priority) in [
            ("critical", "immediate"),
            ("Urgent", "immediate"),
            ("IMMEDIATE", "immediate"),
            ("high", "high"),
            ("moderate", "medium"),
            ("Medium", "medium"),
            ("informational", "low"),
            ("info", "low"),
            (" low ", "low"),
        ] {
            let content = json!({ "summary": "s", "techniques": [], "priority": word }).to_string();
            let got = parse_answer(&answer(&content)).expect(word);
            assert_eq!(got.priority, priority, "{word}");
        }
    }

    #[test]
    fn a_refusal_fails_with_the_reason_and_an_excerpt() {
        reason(
            &answer("I'm sorry, but I can't help with analysing this activity."),
            "no JSON object",
            "I'm sorry, but I can't help",
        );
        let refused = json!({ "choices": [ { "message": {
            "role": "assistant", "content": null, "refusal": "I can't assist with that." },
            "finish_reason": "stop" } ] });
        reason(
            refused.to_string().as_bytes(),
            "the model refused",
            "I can't assist with that.",
        );
    }

    #[test]
    fn a_truncated_answer_fails_with_the_reason_and_an_excerpt() {
        let cut = r#"```json
{"summary":"Encoded PowerShell launched by Word, which"#;
        reason(
            &response(Value::String(cut.into()), "length"),
            "cut off (finish_reason \"length\")",
            r#"```json\n{"summary":"Encoded PowerShell"#,
        );
        // Not flagged by the service, but the object is not closed either.
        reason(&answer(cut), "not closed", "Encoded PowerShell");
    }

    #[test]
    fn an_answer_without_an_object_fails_with_the_reason_and_an_excerpt() {
        reason(
            &answer("Sure! Here is my analysis: it looks bad.\n\tPriority: high"),
            "no JSON object",
            r"it looks bad.\n\tPriority: high",
        );
        // Braces that never parse as JSON are not an object either.
        reason(
            &answer("Use {summary: x} here"),
            "no JSON object",
            "Use {summary: x} here",
        );
    }

    #[test]
    fn an_answer_whose_techniques_are_all_invalid_fails_saying_which() {
        let err = reason(
            &answer(r#"{"summary":"x","techniques":["rm -rf","PowerShell"],"priority":"low"}"#),
            "ATT&CK technique id",
            r#"{"summary":"x""#,
        );
        assert!(
            err.contains("\"rm -rf\"") && err.contains("\"PowerShell\""),
            "{err}"
        );
    }

    #[test]
    fn missing_or_unusable_fields_fail_naming_the_field() {
        for (content, says) in [
            (
                r#"{"techniques":[],"priority":"low"}"#,
                "no summary (looked for summary, analysis",
            ),
            (r#"{"summary":"x","priority":"low"}"#, "no techniques"),
            (r#"{"summary":"x","techniques":[]}"#, "no priority"),
            (
                r#"{"summary":"x","techniques":[],"priority":"urgent!!"}"#,
                "`priority` = \"urgent!!\" is not one of",
            ),
            (
                r#"{"summary":"","techniques":[],"priority":"low"}"#,
                "`summary` is not a non-empty string",
            ),
            (
                r#"{"summary":"x","techniques":7,"priority":"low"}"#,
                "neither a list",
            ),
        ] {
            reason(&answer(content), says, &content[..10]);
        }
    }

    #[test]
    fn responses_that_are_not_chat_completions_fail_with_an_excerpt() {
        reason(b"<html>\r\n<h1>502</h1>", "not JSON", r"<html>\r\n<h1>502");
        reason(b"{\"choices\":[]}", "choices[0]", r#"{"choices":[]}"#);
        reason(
            &response(json!(42), "stop"),
            "neither text nor a list of parts",
            "42",
        );
    }

    #[test]
    fn a_status_other_than_200_is_reported_with_the_start_of_the_body() {
        let err = status_reason(
            429,
            br#"{"error":{"message":"Rate limit reached for requests","type":"requests"}}"#,
        );
        assert!(err.contains("HTTP 429 (the service's rate limit"), "{err}");
        assert!(err.contains("Rate limit reached for requests"), "{err}");
        assert_eq!(
            status_reason(500, b" "),
            "the service answered HTTP 500 (the service failed)"
        );
    }

    #[test]
    fn an_excerpt_is_short_and_escapes_control_characters() {
        let long = format!("a\u{1b}[31m\n{}", "x".repeat(500));
        let short = excerpt(&long);
        assert!(short.chars().count() <= EXCERPT_CHARS, "{short}");
        assert!(short.starts_with(r"a\u{1b}[31m\nxxx"), "{short}");
        assert!(short.ends_with('…'));
        assert_eq!(excerpt(r#"{"a":"it's \\"}"#), r#"{"a":"it's \\"}"#);
        // An escape at the cut is dropped whole, never split.
        let at_cut = format!("{}\n\n", "y".repeat(EXCERPT_CHARS - 2));
        let short = excerpt(&format!("{at_cut}z"));
        assert!(short.chars().count() <= EXCERPT_CHARS);
        assert!(!short.contains('\\'), "{short}");
        assert_eq!(excerpt("  fits  "), "fits");
    }
}
