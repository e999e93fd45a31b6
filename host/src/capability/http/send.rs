//! The live request: the grant's checks, then the exchange, redirects
//! followed and checked by the host.

use std::io::Read;
use std::time::{Duration, Instant};

use url::Url;

use super::origin::checked_addresses;
use super::policy::is_token;
use super::record::{RecordedBody, RecordedResponse};
use super::{HOST_SET, HttpCtx, MAX_HEADER_BYTES, MAX_HEADERS, MAX_REDIRECTS, denied, invalid};
use crate::bindings::vigil::plugin::http as wit;
use crate::capability::tape::Refusal;

/// The live request: checks, then the exchange with redirects.
pub(super) fn send(
    ctx: &HttpCtx,
    request: &wit::Request,
) -> Result<RecordedResponse, Refusal<wit::Error>> {
    let policy = &*ctx.policy;
    let mut method = request.method.to_ascii_uppercase();
    if !is_token(&method) {
        return Err(invalid(format!(
            "`{}` is not an HTTP method",
            request.method
        )));
    }
    if !policy.methods.contains(&method) {
        return Err(denied(format!(
            "method {method} is not granted (granted: {})",
            policy.methods.join(", ")
        )));
    }
    let mut url = Url::parse(&request.url)
        .map_err(|e| invalid(format!("`{}`: {e}", policy.scrub(&request.url))))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "scheme `{}` is not http or https",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("credentials in the URL are not allowed".into()));
    }
    if request.headers.len() > MAX_HEADERS
        || request.headers.iter().any(|(k, v)| {
            !is_token(k) || k.len() + v.len() > MAX_HEADER_BYTES || v.contains(['\r', '\n'])
        })
    {
        return Err(invalid(format!(
            "headers: at most {MAX_HEADERS}, names must be tokens, values one line of at most {MAX_HEADER_BYTES} bytes"
        )));
    }
    // Checked before the rate limit is spent: a refused request costs nothing.
    policy.backoff.check(&url)?;
    let resolve_by = ctx.deadline.min(Instant::now() + policy.timeout);
    let mut first_hop = Some(checked_addresses(policy.origin_of(&url), &url, resolve_by)?);
    if request.body.len() > policy.max_request_bytes {
        return Err(Refusal {
            error: wit::Error::RequestTooLarge,
            detail: Some(format!(
                "{} bytes, the grant allows {}",
                request.body.len(),
                policy.max_request_bytes
            )),
        });
    }
    if !policy.rate.try_acquire() {
        return Err(Refusal {
            error: wit::Error::RateLimited,
            detail: Some(format!(
                "{} requests in the last minute",
                policy.rate.per_minute
            )),
        });
    }

    let started = Instant::now();
    let budget = policy
        .timeout
        .min(ctx.deadline.saturating_duration_since(started));
    let bound_by = if budget < policy.timeout {
        "what was left of the plugin's deadline"
    } else {
        "the grant's timeout_ms"
    };
    let timeout = |what: &str| Refusal {
        error: wit::Error::Timeout,
        detail: Some(format!("{what} within {budget:?} ({bound_by})")),
    };
    let mut body = request.body.clone();
    let mut redirects = 0;
    loop {
        let remaining = budget.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            return Err(timeout("no response"));
        }
        let addrs = match first_hop.take() {
            Some(addrs) => addrs,
            None => checked_addresses(policy.origin_of(&url), &url, Instant::now() + remaining)?,
        };
        // The resolver hands ureq the addresses checked above, so what is
        // connected to is what was checked (no second lookup to rebind).
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(remaining)
            .resolver(move |_: &str| Ok(addrs.clone()))
            .build();
        let mut req = agent.request_url(&method, &url);
        for (name, value) in &request.headers {
            let lower = name.to_ascii_lowercase();
            if HOST_SET.contains(&lower.as_str()) || policy.headers.iter().any(|h| h.name == lower)
            {
                continue;
            }
            req = req.set(name, value);
        }
        let mut host_headers = Vec::new();
        for h in policy.headers.iter().filter(|h| h.origin.matches(&url)) {
            req = req.set(&h.name, &h.value);
            host_headers.push((h.name.clone(), h.template.clone()));
        }
        let response = if body.is_empty() && matches!(method.as_str(), "GET" | "HEAD") {
            req.call()
        } else {
            req.send_bytes(&body)
        };
        let response = match response {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => {
                if started.elapsed() >= budget.saturating_sub(Duration::from_millis(5))
                    || t.to_string().contains("timed out")
                {
                    return Err(timeout("no response"));
                }
                return Err(wit::Error::ConnectionFailed(policy.scrub(&t.to_string())).into());
            }
        };
        let status = response.status();
        if matches!(status, 301 | 302 | 303 | 307 | 308) {
            let location = response.header("location").unwrap_or_default().to_owned();
            let next = url.join(&location).map_err(|e| {
                Refusal::from(wit::Error::ConnectionFailed(format!(
                    "redirect to `{location}`: {e}"
                )))
            })?;
            redirects += 1;
            if redirects > MAX_REDIRECTS {
                return Err(wit::Error::ConnectionFailed(format!(
                    "more than {MAX_REDIRECTS} redirects"
                ))
                .into());
            }
            if policy.origin_of(&next).is_none() {
                return Err(denied(format!(
                    "redirect from {url} to {}: origin {} is not granted",
                    policy.scrub(next.as_str()),
                    next.origin().ascii_serialization()
                )));
            }
            policy.backoff.check(&next)?;
            if status == 303 || (matches!(status, 301 | 302) && method == "POST") {
                method = "GET".into();
                body.clear();
            }
            url = next;
            continue;
        }
        policy
            .backoff
            .note_response(&url, status, response.header("retry-after"));
        let headers: Vec<(String, String)> = response
            .headers_names()
            .into_iter()
            .map(|name| {
                let value = response.header(&name).unwrap_or_default();
                (name.to_ascii_lowercase(), policy.scrub(value))
            })
            .collect();
        let mut received = Vec::new();
        let read = response
            .into_reader()
            .take(policy.max_response_bytes as u64 + 1)
            .read_to_end(&mut received);
        if let Err(e) = read {
            if started.elapsed() >= budget.saturating_sub(Duration::from_millis(5)) {
                return Err(timeout("no complete body"));
            }
            return Err(wit::Error::ConnectionFailed(format!("reading the body: {e}")).into());
        }
        if received.len() > policy.max_response_bytes {
            return Err(Refusal {
                error: wit::Error::ResponseTooLarge,
                detail: Some(format!(
                    "more than the {} bytes the grant allows",
                    policy.max_response_bytes
                )),
            });
        }
        let bytes = received.len() as u64;
        let received = policy.scrub_bytes(received);
        return Ok(RecordedResponse {
            status,
            headers,
            body: RecordedBody::of(&received),
            url: url.to_string(),
            redirects,
            latency_ms: started.elapsed().as_millis() as u64,
            bytes,
            host_headers,
        });
    }
}
