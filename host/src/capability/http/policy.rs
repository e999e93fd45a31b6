//! A plugin's `http` grant, resolved: origins, methods, limits, secret
//! headers, its request rate and the services' back-off.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::backoff::ServiceBackoff;
use super::origin::Origin;
use super::secrets::{SecretHeader, SecretSource, Secrets, template_parts};
use super::{
    DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_REQUESTS_PER_MINUTE,
    DEFAULT_TIMEOUT,
};

/// Scope of an `http` grant (see the module doc of `capability/http`). Everything not
/// listed is refused: no origins means no requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGrant {
    /// Allowed origins: `scheme://host[:port]`, where host may start with
    /// `*.` to allow any subdomain (not the bare domain). An origin whose
    /// host is an IP address also allows that address even when it is
    /// loopback, link-local or private.
    #[serde(default)]
    pub origins: Vec<String>,
    /// Allowed methods, e.g. `["POST"]`.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Largest request body in bytes (default 64 KiB).
    #[serde(default)]
    pub max_request_bytes: Option<usize>,
    /// Largest response body in bytes (default 1 MiB).
    #[serde(default)]
    pub max_response_bytes: Option<usize>,
    /// Timeout per request, redirects included, ms (default 10000). The
    /// plugin's remaining deadline caps it further.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Requests per minute for this plugin (default 60): that many at
    /// once, then one every `60 s / requests_per_minute`.
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Headers the host adds, with `${NAME}` replaced by a secret.
    #[serde(default)]
    pub headers: Vec<HttpHeaderGrant>,
}

/// A header the host sets on requests to one origin; the plugin never sees
/// its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpHeaderGrant {
    /// The origin (one of the grant's `origins`) the header is sent to.
    pub origin: String,
    /// Header name, e.g. `Authorization`.
    pub name: String,
    /// Value template, e.g. `Bearer ${AI_API_KEY}`: each `${NAME}` is read
    /// from `[secrets] file`, else from the environment variable `NAME`.
    pub value: String,
}

pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A resolved `http` grant: what every call of one plugin is checked against.
#[derive(Debug)]
pub struct HttpPolicy {
    pub(super) origins: Vec<Origin>,
    pub(super) methods: Vec<String>,
    pub(super) max_request_bytes: usize,
    pub(super) max_response_bytes: usize,
    pub(super) timeout: Duration,
    pub(super) rate: RateLimiter,
    /// Origins that answered 429/503, refused until their `Retry-After`.
    pub(super) backoff: ServiceBackoff,
    pub(super) headers: Vec<SecretHeader>,
    /// `(value, NAME)` of every secret used, longest first, for scrubbing.
    pub(super) secrets: Secrets,
}

impl HttpPolicy {
    /// Check a grant's syntax (policy load): origins, methods, header
    /// templates and limits. Secrets are not read here.
    pub fn validate(grant: &HttpGrant) -> Result<(), String> {
        let origins = grant
            .origins
            .iter()
            .map(|o| Origin::parse(o))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(m) = grant.methods.iter().find(|m| !is_token(m)) {
            return Err(format!("method `{m}` is not an HTTP method"));
        }
        for h in &grant.headers {
            let origin = Origin::parse(&h.origin)?;
            if !origins.contains(&origin) {
                return Err(format!(
                    "header `{}` is bound to `{}`, which is not in `origins`",
                    h.name, h.origin
                ));
            }
            if !is_token(&h.name) {
                return Err(format!("`{}` is not a header name", h.name));
            }
            template_parts(&h.value)?;
        }
        if grant.timeout_ms == Some(0) {
            return Err("timeout_ms must be at least 1".into());
        }
        if grant.requests_per_minute == Some(0) {
            return Err(
                "requests_per_minute must be at least 1 (to allow nothing, leave out \"http\")"
                    .into(),
            );
        }
        Ok(())
    }

    /// Resolve `grant` for one plugin, reading its secrets from `secrets`.
    pub fn resolve(grant: &HttpGrant, secrets: &SecretSource) -> Result<HttpPolicy, String> {
        Self::validate(grant)?;
        let mut headers = Vec::new();
        let mut used = Vec::new();
        for h in &grant.headers {
            let mut value = String::new();
            for (is_secret, part) in template_parts(&h.value)? {
                if is_secret {
                    let secret = secrets.get(part)?;
                    value.push_str(&secret);
                    used.push((secret, part.to_owned()));
                } else {
                    value.push_str(part);
                }
            }
            headers.push(SecretHeader {
                origin: Origin::parse(&h.origin)?,
                name: h.name.to_ascii_lowercase(),
                template: h.value.clone(),
                value,
            });
        }
        Ok(HttpPolicy {
            origins: grant
                .origins
                .iter()
                .map(|o| Origin::parse(o))
                .collect::<Result<_, _>>()?,
            methods: grant
                .methods
                .iter()
                .map(|m| m.to_ascii_uppercase())
                .collect(),
            max_request_bytes: grant.max_request_bytes.unwrap_or(DEFAULT_MAX_REQUEST_BYTES),
            max_response_bytes: grant
                .max_response_bytes
                .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES),
            timeout: grant
                .timeout_ms
                .map_or(DEFAULT_TIMEOUT, Duration::from_millis),
            rate: RateLimiter::new(
                grant
                    .requests_per_minute
                    .unwrap_or(DEFAULT_REQUESTS_PER_MINUTE),
            ),
            backoff: ServiceBackoff::default(),
            headers,
            secrets: Secrets::new(used)?,
        })
    }

    pub(super) fn origin_of(&self, url: &Url) -> Option<&Origin> {
        self.origins.iter().find(|o| o.matches(url))
    }

    /// Replace every secret value in `text` by `[secret:NAME]`.
    pub(super) fn scrub(&self, text: &str) -> String {
        self.secrets.scrub(text)
    }

    pub(super) fn scrub_bytes(&self, body: Vec<u8>) -> Vec<u8> {
        match String::from_utf8(body) {
            Ok(text) => self.scrub(&text).into_bytes(),
            Err(e) => {
                let bytes = e.into_bytes();
                let lossy = String::from_utf8_lossy(&bytes);
                if self.secrets.found_in(&lossy) {
                    self.scrub(&lossy).into_bytes()
                } else {
                    bytes
                }
            }
        }
    }
}

/// Requests per minute for one plugin, across its calls: `per_minute`
/// at once, then one more every `60 s / per_minute` (governor's GCRA).
pub(super) struct RateLimiter {
    pub(super) per_minute: u32,
    limiter: governor::DefaultDirectRateLimiter,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("per_minute", &self.per_minute)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// `per_minute` is at least 1 (the policy refuses 0).
    pub(super) fn new(per_minute: u32) -> Self {
        let rate = std::num::NonZeroU32::new(per_minute).unwrap_or(std::num::NonZeroU32::MIN);
        RateLimiter {
            per_minute: rate.get(),
            limiter: governor::RateLimiter::direct(governor::Quota::per_minute(rate)),
        }
    }

    pub(super) fn try_acquire(&self) -> bool {
        self.limiter.check().is_ok()
    }
}
