//! Detects brute-force logons: at least `threshold` failed logons for one
//! account from one source within `window_seconds`, followed by a success.
//!
//! Reads Windows Security 4625 (failure) / 4624 (success) events and Linux
//! sshd authentication events (ECS shape). Failure times are kept through
//! the `state` capability under `fail/<account>|<source>`, because every
//! batch runs in a fresh instance; time is the events' own timestamps, so a
//! replay of the same events gives the same answer.
//!
//! Config: `threshold` (default 5), `window_seconds` (default 300).

use vigil_sdk::{Config, Detector, Event, Finding, Findings, PluginError, Severity, log, state};

/// The detector.
pub struct BruteForce {
    threshold: usize,
    window_seconds: u64,
}

/// One authentication attempt, normalised across event shapes.
#[derive(Debug, PartialEq)]
struct Attempt<'a> {
    success: bool,
    account: String,
    source: &'a str,
    time: u64,
}

impl Detector for BruteForce {
    fn init(config: &Config) -> Result<Self, PluginError> {
        let threshold = config.u64_or("threshold", 5)?;
        if threshold == 0 {
            return Err(PluginError::InvalidConfig(
                "`threshold` must be at least 1".into(),
            ));
        }
        Ok(BruteForce {
            threshold: threshold as usize,
            window_seconds: config.u64_or("window_seconds", 300)?,
        })
    }

    fn fields(&self) -> Option<Vec<String>> {
        let fields = [
            "Event.System.EventID",
            "Event.System.TimeCreated",
            "Event.EventData.TargetUserName",
            "Event.EventData.IpAddress",
            "@timestamp",
            "event.category",
            "event.outcome",
            "user.name",
            "source.ip",
        ];
        Some(fields.map(str::to_owned).to_vec())
    }

    fn detect(&mut self, event: &Event<'_>, findings: &mut Findings) {
        let Some(attempt) = attempt(event) else {
            return;
        };
        let key = format!("fail/{}|{}", attempt.account, attempt.source);
        let failures = match state::get(&key) {
            Ok(value) => parse_times(value.as_deref().unwrap_or("")),
            Err(e) => {
                let _ = log::emit(
                    log::Level::Warn,
                    "state read failed",
                    &[("error", &e.to_string())],
                );
                return;
            }
        };
        let window_start = attempt.time.saturating_sub(self.window_seconds);
        let mut recent: Vec<u64> = failures
            .into_iter()
            .filter(|t| *t >= window_start && *t <= attempt.time)
            .collect();
        let result = if attempt.success {
            if recent.len() >= self.threshold {
                findings.push(
                    Finding::new(
                        "vigil.auth.brute-force-success",
                        "Successful logon after repeated failures",
                        Severity::High,
                    )
                    .technique("T1110")
                    .technique("T1110.001")
                    .evidence("Account", attempt.account.as_str())
                    .evidence("Source", attempt.source)
                    .evidence("FailuresInWindow", recent.len().to_string())
                    .evidence("WindowSeconds", self.window_seconds.to_string()),
                );
            }
            state::delete(&key)
        } else {
            recent.push(attempt.time);
            let text: Vec<String> = recent.iter().map(u64::to_string).collect();
            state::set(&key, &text.join(","), Some(self.window_seconds))
        };
        if let Err(e) = result {
            let _ = log::emit(
                log::Level::Warn,
                "state write failed",
                &[("error", &e.to_string())],
            );
        }
    }
}

vigil_sdk::export_detector!(BruteForce);

fn attempt<'a>(event: &Event<'a>) -> Option<Attempt<'a>> {
    if let Some(id) = event.i64("Event.System.EventID") {
        let success = match id {
            4624 => true,
            4625 => false,
            _ => return None,
        };
        let source = event.str("Event.EventData.IpAddress")?;
        if source.is_empty() || source == "-" {
            return None;
        }
        return Some(Attempt {
            success,
            account: event.str("Event.EventData.TargetUserName")?.to_lowercase(),
            source,
            time: parse_rfc3339(event.str("Event.System.TimeCreated.#attributes.SystemTime")?)?,
        });
    }
    let is_auth = event
        .get("event.category")
        .and_then(|c| c.as_list())
        .is_some_and(|l| l.iter().any(|v| v.as_str() == Some("authentication")));
    if !is_auth {
        return None;
    }
    let success = match event.str("event.outcome")? {
        "success" => true,
        "failure" => false,
        _ => return None,
    };
    Some(Attempt {
        success,
        account: event.str("user.name")?.to_lowercase(),
        source: event.str("source.ip")?,
        time: parse_rfc3339(event.str("@timestamp")?)?,
    })
}

fn parse_times(text: &str) -> Vec<u64> {
    text.split(',').filter_map(|t| t.parse().ok()).collect()
}

/// Seconds since the Unix epoch of an RFC 3339 UTC timestamp such as
/// `2026-11-20T08:15:02.123456Z` (fractions ignored).
fn parse_rfc3339(ts: &str) -> Option<u64> {
    let b = ts.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<u64> { ts.get(range)?.parse().ok() };
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)? as i64, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days from civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days)
        .ok()
        .map(|d| d * 86_400 + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_sdk::testing::TestHost;

    fn windows(id: u32, user: &str, ip: &str, time: &str) -> String {
        format!(
            r##"{{"Event":{{"System":{{"EventID":{id},"TimeCreated":{{"#attributes":{{"SystemTime":"{time}"}}}}}},"EventData":{{"TargetUserName":"{user}","IpAddress":"{ip}"}}}}}}"##
        )
    }

    fn linux(outcome: &str, user: &str, ip: &str, time: &str) -> String {
        format!(
            r#"{{"@timestamp":"{time}","event":{{"category":["authentication"],"outcome":"{outcome}"}},"user":{{"name":"{user}"}},"source":{{"ip":"{ip}"}}}}"#
        )
    }

    #[test]
    fn rfc3339_timestamps_parse_to_epoch_seconds() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-11-20T08:15:02.123456Z"),
            Some(1_795_162_502)
        );
        assert_eq!(parse_rfc3339("2026-13-20T08:15:02Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn success_after_threshold_failures_fires_once_across_batches() {
        let mut host = TestHost::new();
        let failures: Vec<String> = (0..5)
            .map(|i| {
                windows(
                    4625,
                    "SVC_Backup",
                    "203.0.113.45",
                    &format!("2026-11-20T08:15:{:02}Z", i * 10),
                )
            })
            .collect();
        // Failures in one batch, success in the next: memory lives in state.
        assert!(
            host.run::<BruteForce>(&failures.join("\n"))
                .expect("batch 1")
                .is_empty()
        );
        let findings = host
            .run::<BruteForce>(&windows(
                4624,
                "svc_backup",
                "203.0.113.45",
                "2026-11-20T08:16:00Z",
            ))
            .expect("batch 2");
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].rule_id, "vigil.auth.brute-force-success");
        // The success cleared the counter.
        let again = host
            .run::<BruteForce>(&windows(
                4624,
                "svc_backup",
                "203.0.113.45",
                "2026-11-20T08:16:05Z",
            ))
            .expect("batch 3");
        assert!(again.is_empty());
    }

    #[test]
    fn failures_outside_the_window_or_below_threshold_do_not_fire() {
        let mut host = TestHost::new();
        let mut lines: Vec<String> = (0..6)
            .map(|i| {
                linux(
                    "failure",
                    "root",
                    "198.51.100.77",
                    &format!("2026-11-20T09:{:02}:00Z", i * 4),
                )
            })
            .collect();
        lines.push(linux(
            "success",
            "root",
            "198.51.100.77",
            "2026-11-20T09:21:00Z",
        ));
        lines.push(linux(
            "failure",
            "alice",
            "10.20.1.5",
            "2026-11-20T09:22:00Z",
        ));
        lines.push(linux(
            "success",
            "alice",
            "10.20.1.5",
            "2026-11-20T09:22:10Z",
        ));
        assert!(
            host.run::<BruteForce>(&lines.join("\n"))
                .expect("detect")
                .is_empty()
        );
    }

    #[test]
    fn zero_threshold_is_a_config_error_naming_the_key() {
        let err = TestHost::new()
            .config("threshold", "0")
            .run::<BruteForce>("")
            .unwrap_err();
        assert!(matches!(err, PluginError::InvalidConfig(m) if m.contains("threshold")));
    }
}
