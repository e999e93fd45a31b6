//! A service's "slow down", honoured for the whole plugin: after a 429 or
//! 503 from an origin, the plugin's further requests to that origin are
//! refused (`rate-limited`, not sent) until the time the service asked for
//! in `Retry-After`, or, when it named none, an exponential backoff with
//! jitter. Any other final response resets the backoff.
//!
//! Why in the host: an enricher gets a fresh instance per finding, so
//! nothing it learns from one answer survives to the next finding; the
//! per-plugin `HttpPolicy` does (built once per plugin and generation,
//! shared by every call, like the requests-per-minute limiter). Why
//! hand-written: retry crates (`backoff`, `backon`) retry one operation in
//! a loop and rate limiters (`governor`) meter a fixed quota; what is needed
//! here is a gate shared by independent calls, keyed by origin, set by the
//! peer's answers, that refuses instead of waiting. It is one small map.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use url::Url;

use crate::bindings::vigil::plugin::http as wit;
use crate::capability::tape::Refusal;

/// Longest one `Retry-After` may block a plugin. Peer-controlled: clamp.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10 * 60);
/// Backoff after the first 429/503 without `Retry-After`; doubled for each
/// further one in a row.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest backoff (before jitter).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Backoffs are spread by up to this fraction either way, so plugins (and
/// hosts) that were refused together do not come back together.
pub const JITTER: f64 = 0.2;
/// Most origins remembered per plugin. Guest-controlled (a `*.suffix`
/// grant admits any number of names): bounded.
const MAX_ORIGINS: usize = 256;

/// What one plugin knows about the origins that told it to slow down.
#[derive(Debug, Default)]
pub struct ServiceBackoff {
    origins: Mutex<HashMap<String, Blocked>>,
}

/// One origin's backoff.
#[derive(Debug, Clone)]
struct Blocked {
    /// 429/503 answers in a row.
    consecutive: u32,
    /// Requests are refused before this instant...
    until: Instant,
    /// ...which is this wall-clock time, for the audit log.
    until_wall: SystemTime,
    /// Where the time came from, for the audit log.
    why: String,
}

impl ServiceBackoff {
    /// Refuse a request to `url` without sending it while its origin is
    /// blocked; the refusal's detail says until when and why.
    pub fn check(&self, url: &Url) -> Result<(), Refusal<wit::Error>> {
        match self.blocked(&origin_key(url), Instant::now()) {
            Some(detail) => Err(Refusal {
                error: wit::Error::RateLimited,
                detail: Some(detail),
            }),
            None => Ok(()),
        }
    }

    /// Note the final `status` (and `retry-after` header) `url` answered.
    pub fn note_response(&self, url: &Url, status: u16, retry_after: Option<&str>) {
        self.observe(
            &origin_key(url),
            status,
            retry_after,
            (Instant::now(), SystemTime::now()),
            rand::random_range(-JITTER..=JITTER),
        );
    }

    /// The refusal detail if `origin` is blocked at `now`.
    fn blocked(&self, origin: &str, now: Instant) -> Option<String> {
        let origins = self.origins.lock().unwrap_or_else(|p| p.into_inner());
        let b = origins.get(origin).filter(|b| b.until > now)?;
        Some(format!(
            "rate-limited by the service until {} ({}); not sent",
            humantime::format_rfc3339_seconds(b.until_wall),
            b.why
        ))
    }

    /// [`ServiceBackoff::note_response`] at `now` (monotonic, wall), with
    /// `jitter` in `-JITTER..=JITTER` for a backoff.
    fn observe(
        &self,
        origin: &str,
        status: u16,
        retry_after: Option<&str>,
        (now, wall): (Instant, SystemTime),
        jitter: f64,
    ) {
        let mut origins = self.origins.lock().unwrap_or_else(|p| p.into_inner());
        if !matches!(status, 429 | 503) {
            // A request sent before the block may answer after it began:
            // it resets the count, the block still runs out.
            if let Some(b) = origins.get_mut(origin) {
                b.consecutive = 0;
                if b.until <= now {
                    origins.remove(origin);
                }
            }
            return;
        }
        let consecutive = origins.get(origin).map_or(0, |b| b.consecutive) + 1;
        let (wait, why) = match retry_after.and_then(|v| parse_retry_after(v, wall)) {
            Some(asked) if asked > MAX_RETRY_AFTER => (
                MAX_RETRY_AFTER,
                format!(
                    "Retry-After of {} s on a {status} from {origin}, capped at {} s",
                    asked.as_secs(),
                    MAX_RETRY_AFTER.as_secs()
                ),
            ),
            Some(asked) => (
                asked,
                format!(
                    "Retry-After of {} s on a {status} from {origin}",
                    asked.as_secs()
                ),
            ),
            None => {
                let wait = backoff(consecutive, jitter);
                (
                    wait,
                    format!(
                        "no Retry-After: backoff of {:.1} s after {consecutive} 429/503 in a row from {origin}",
                        wait.as_secs_f64()
                    ),
                )
            }
        };
        if !origins.contains_key(origin) && origins.len() >= MAX_ORIGINS {
            origins.retain(|_, b| b.until > now);
            if origins.len() >= MAX_ORIGINS
                && let Some(soonest) = (origins.iter())
                    .min_by_key(|(_, b)| b.until)
                    .map(|(k, _)| k.clone())
            {
                origins.remove(&soonest);
            }
        }
        let entry = origins.entry(origin.to_owned()).or_insert(Blocked {
            consecutive: 0,
            until: now,
            until_wall: wall,
            why: String::new(),
        });
        entry.consecutive = consecutive;
        // Concurrent requests may answer out of order: the later end wins.
        if now + wait >= entry.until {
            entry.until = now + wait;
            entry.until_wall = wall + wait;
            entry.why = why;
        }
    }
}

/// The key of `url`'s origin: `scheme://host[:port]`.
fn origin_key(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// How long a `Retry-After` value asks to wait, read at `wall`: delay
/// seconds (`120`) or an HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`; a date
/// in the past means now). `None` when it is neither.
pub fn parse_retry_after(value: &str, wall: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "a very long time" (clamped).
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(wall).unwrap_or(Duration::ZERO))
}

/// The backoff after `consecutive` (≥ 1) 429/503 answers without
/// `Retry-After`: [`FIRST_BACKOFF`] doubled each time up to
/// [`MAX_BACKOFF`], then spread by `jitter` (clamped to ±[`JITTER`]).
pub fn backoff(consecutive: u32, jitter: f64) -> Duration {
    let doublings = consecutive.saturating_sub(1).min(16);
    let base = FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF);
    base.mul_f64(1.0 + jitter.clamp(-JITTER, JITTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "https://api.example.com";

    /// A monotonic now and the wall time it stands for (2027-01-15T08:00:00Z).
    fn clock() -> (Instant, SystemTime) {
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        (Instant::now(), wall)
    }

    fn secs(d: Duration) -> f64 {
        (d.as_secs_f64() * 1000.0).round() / 1000.0
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_450);
        assert_eq!(
            parse_retry_after(" 30 ", wall),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("0", wall), Some(Duration::ZERO));
        // 1445412480 is Wed, 21 Oct 2015 07:28:00 GMT: 30 s after `wall`.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", wall),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Tue, 20 Oct 2015 07:28:00 GMT", wall),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        for bad in ["", "-5", "1.5", "soon", "30s"] {
            assert_eq!(parse_retry_after(bad, wall), None, "{bad:?}");
        }
        assert_eq!(
            parse_retry_after("99999999999999999999999", wall),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn a_retry_after_blocks_the_origin_until_then_and_names_the_time() {
        let gate = ServiceBackoff::default();
        let (now, wall) = clock();
        gate.observe(ORIGIN, 429, Some("30"), (now, wall), 0.0);
        let detail = gate.blocked(ORIGIN, now).expect("blocked");
        assert_eq!(
            detail,
            "rate-limited by the service until 2027-01-15T08:00:30Z (Retry-After of 30 s on a 429 \
             from https://api.example.com); not sent"
        );
        assert!(
            gate.blocked(ORIGIN, now + Duration::from_secs(29))
                .is_some()
        );
        assert!(
            gate.blocked(ORIGIN, now + Duration::from_secs(30))
                .is_none()
        );
        assert!(
            gate.blocked("https://other.example.com", now).is_none(),
            "per origin"
        );
    }

    #[test]
    fn a_retry_after_is_capped() {
        let gate = ServiceBackoff::default();
        let (now, wall) = clock();
        gate.observe(ORIGIN, 503, Some("86400"), (now, wall), 0.0);
        let detail = gate.blocked(ORIGIN, now).expect("blocked");
        assert!(detail.contains("capped at 600 s"), "{detail}");
        assert!(gate.blocked(ORIGIN, now + MAX_RETRY_AFTER).is_none());
        assert!((gate.blocked(ORIGIN, now + MAX_RETRY_AFTER - Duration::from_millis(1))).is_some());
    }

    #[test]
    fn without_retry_after_the_backoff_doubles_within_the_jitter_and_stops_at_the_cap() {
        for (n, base) in [
            (1, 1.0),
            (2, 2.0),
            (3, 4.0),
            (6, 32.0),
            (7, 60.0),
            (500, 60.0),
        ] {
            assert_eq!(secs(backoff(n, 0.0)), base, "{n}");
            assert_eq!(
                secs(backoff(n, -JITTER)),
                secs(Duration::from_secs_f64(base * 0.8))
            );
            assert_eq!(
                secs(backoff(n, JITTER)),
                secs(Duration::from_secs_f64(base * 1.2))
            );
            assert_eq!(backoff(n, 5.0), backoff(n, JITTER), "jitter is clamped");
        }
        // The live jitter stays within its bounds.
        for _ in 0..100 {
            let j: f64 = rand::random_range(-JITTER..=JITTER);
            let d = backoff(3, j).as_secs_f64();
            assert!((3.2..=4.8).contains(&d), "{d}");
        }
        let gate = ServiceBackoff::default();
        let (now, wall) = clock();
        gate.observe(ORIGIN, 503, None, (now, wall), 0.0);
        gate.observe(ORIGIN, 503, Some("soon"), (now, wall), 0.0);
        let detail = gate.blocked(ORIGIN, now).expect("blocked");
        assert!(
            detail.contains("no Retry-After: backoff of 2.0 s after 2 429/503 in a row"),
            "{detail}"
        );
        assert!(gate.blocked(ORIGIN, now + Duration::from_secs(2)).is_none());
    }

    #[test]
    fn any_other_answer_resets_the_count_but_not_a_running_block() {
        let gate = ServiceBackoff::default();
        let (now, wall) = clock();
        for _ in 0..3 {
            gate.observe(ORIGIN, 429, None, (now, wall), 0.0);
        }
        // A request sent before the block answers 200 while it runs.
        gate.observe(ORIGIN, 200, None, (now, wall), 0.0);
        assert!(gate.blocked(ORIGIN, now).is_some(), "the block runs out");
        let later = now + Duration::from_secs(5);
        gate.observe(ORIGIN, 429, None, (later, wall), 0.0);
        let detail = gate.blocked(ORIGIN, later).expect("blocked");
        assert!(
            detail.contains("backoff of 1.0 s after 1 429/503"),
            "{detail}"
        );
        // Once it ran out, a success forgets the origin.
        gate.observe(ORIGIN, 200, None, (later + MAX_BACKOFF, wall), 0.0);
        assert!(gate.origins.lock().expect("lock").is_empty());
    }

    #[test]
    fn remembered_origins_are_bounded() {
        let gate = ServiceBackoff::default();
        let (now, wall) = clock();
        for i in 0..MAX_ORIGINS + 10 {
            let origin = format!("https://h{i}.example.com");
            gate.observe(&origin, 429, Some("60"), (now, wall), 0.0);
        }
        let origins = gate.origins.lock().expect("lock");
        assert_eq!(origins.len(), MAX_ORIGINS);
        assert!(origins.contains_key(&format!("https://h{}.example.com", MAX_ORIGINS + 9)));
    }
}
