//! `vigil:plugin/http`: outbound HTTP, enforced and recorded by the host.
//!
//! Why a Vigil interface and not `wasi:http`: one synchronous `send`
//! (request record in, response record out) binds the same way in every
//! guest toolchain (wit-bindgen for Rust and C, componentize-py, jco), and
//! it is exactly one host call on the audit tape, so `vigil replay` answers
//! it from the log. Intercepting `wasi:http` would mean enforcing and
//! recording across its resources (requests, bodies, streams, futures).
//!
//! What the host enforces, in order, on every request (see [`HttpPolicy`]):
//! 1. revocation (by the tape, before this module runs);
//! 2. method and origin (`scheme://host:port`, exact or `*.suffix`) in the
//!    grant; the origin not blocked by its own 429/503 (`backoff.rs`);
//!    request body size, then the per-plugin rate limit;
//! 3. the host resolves the name itself and refuses loopback, link-local,
//!    private and other non-public addresses unless the matching origin is
//!    that very IP address; the connection goes to the checked address;
//! 4. redirects are followed by the host (at most five), every hop checked
//!    as in 2 and 3; a hop to an origin outside the grant is `access-denied`;
//! 5. `host`, `content-length`, `transfer-encoding`, `connection` and the
//!    grant's secret headers are set by the host; the guest's values for
//!    them are dropped. Secret values (`${NAME}` in a header template) are
//!    replaced by `[secret:NAME]` in anything the guest gets back or the
//!    log records, so an echoing server cannot leak them either;
//! 6. one timeout covers the request, its redirects and reading the body:
//!    the grant's `timeout_ms` or what is left of the plugin's deadline,
//!    whichever is shorter; the response body is cut at the grant's size
//!    (`response-too-large`).
//!
//! Recorded per call: method, URL, guest headers, body (text, or hex when
//! not UTF-8) and its SHA-256; the result holds the status, response
//! headers and body, the final URL, redirects, latency, bytes, and the
//! host-set headers as templates (`Bearer ${AI_API_KEY}`), never values.
//! Refusals carry a `detail` saying which rule refused.

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use url::Url;
use wasmtime::component::{HasData, Linker};

mod backoff;

use self::backoff::ServiceBackoff;
use super::Capability;
use crate::audit::tape::{RecordedError, Refusal, Tape};
use crate::bindings::vigil::plugin::http as wit;
use crate::policy::{HttpGrant, Policy};

/// Default largest request body.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 << 10;
/// Default largest response body.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Default timeout per request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default requests per minute per plugin.
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 60;
/// Most redirects followed.
const MAX_REDIRECTS: u32 = 5;
/// Most guest headers and their longest name or value. Guest-controlled.
const MAX_HEADERS: usize = 64;
const MAX_HEADER_BYTES: usize = 8192;
/// Headers only the host sets.
const HOST_SET: [&str; 4] = ["host", "content-length", "transfer-encoding", "connection"];

/// A granted origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: HostPattern,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// Exactly this name.
    Name(String),
    /// Any name ending in `.suffix` (not the suffix itself).
    Subdomains(String),
    /// Exactly this address, which the operator thereby allows even when
    /// it is loopback or private.
    Ip(IpAddr),
}

impl Origin {
    /// Parse `scheme://host[:port]` (`host` may be `*.suffix`, an IPv4
    /// address or a bracketed IPv6 address).
    pub fn parse(text: &str) -> Result<Origin, String> {
        let shape = || format!("origin `{text}` must look like `https://api.example.com[:port]`");
        let (scheme, rest) = text.split_once("://").ok_or_else(shape)?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(format!("origin `{text}`: scheme must be http or https")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return Err(format!("{}; an origin has no path, query or user", shape()));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (addr, after) = v6.split_once(']').ok_or_else(shape)?;
            (format!("[{addr}]"), after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (rest.to_owned(), None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse()
                .map_err(|_| format!("origin `{text}`: `{p}` is not a port"))?,
            None => default_port,
        };
        let host = host.to_ascii_lowercase();
        let pattern = if let Some(suffix) = host.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') {
                return Err(format!(
                    "origin `{text}`: only a leading `*.` wildcard is allowed"
                ));
            }
            HostPattern::Subdomains(suffix.to_owned())
        } else if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            HostPattern::Ip(ip)
        } else if host.is_empty() || host.contains('*') {
            return Err(format!(
                "origin `{text}`: only a leading `*.` wildcard is allowed"
            ));
        } else {
            HostPattern::Name(host)
        };
        Ok(Origin {
            scheme,
            host: pattern,
            port,
        })
    }

    /// Whether `url` is on this origin.
    fn matches(&self, url: &Url) -> bool {
        if url.scheme() != self.scheme || url.port_or_known_default() != Some(self.port) {
            return false;
        }
        match (&self.host, url.host()) {
            (HostPattern::Name(name), Some(url::Host::Domain(d))) => d == name,
            (HostPattern::Subdomains(suffix), Some(url::Host::Domain(d))) => d
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.ends_with('.') && head.len() > 1),
            (HostPattern::Ip(ip), Some(url::Host::Ipv4(v4))) => *ip == IpAddr::V4(v4),
            (HostPattern::Ip(ip), Some(url::Host::Ipv6(v6))) => *ip == IpAddr::V6(v6),
            _ => false,
        }
    }

    /// The address this origin names, if it is an IP origin.
    fn ip(&self) -> Option<IpAddr> {
        match self.host {
            HostPattern::Ip(ip) => Some(ip),
            _ => None,
        }
    }
}

/// Why `ip` is not a public address, if it is not.
fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_unspecified() || v4.is_broadcast() || a == 0 {
                Some("unspecified or broadcast")
            } else if a == 100 && (64..128).contains(&b) {
                Some("shared (carrier-grade NAT)")
            } else if v4.is_multicast() || a >= 240 {
                Some("multicast or reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if let Some(v4) = v6.to_ipv4_mapped() {
                non_public(IpAddr::V4(v4))
            } else if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if first & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else {
                None
            }
        }
    }
}

/// A header the host sets on requests to one origin. `Debug` shows the
/// template, never the value.
#[derive(Clone)]
struct SecretHeader {
    origin: Origin,
    /// Lower case.
    name: String,
    /// As written in the policy, for the record.
    template: String,
    /// With secrets substituted; never recorded.
    value: String,
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
struct Secrets(Vec<(String, String)>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(_, name)| name))
            .finish()
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
    /// Read `[secrets] file` of `policy`, if set.
    pub fn from_policy(policy: &Policy) -> Result<SecretSource, String> {
        let Some(path) = &policy.secrets.file else {
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
            file: Some((path.clone(), values)),
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

    fn get(&self, name: &str) -> Result<String, String> {
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
fn template_parts(template: &str) -> Result<Vec<(bool, &str)>, String> {
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

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A resolved `http` grant: what every call of one plugin is checked against.
#[derive(Debug)]
pub struct HttpPolicy {
    origins: Vec<Origin>,
    methods: Vec<String>,
    max_request_bytes: usize,
    max_response_bytes: usize,
    timeout: Duration,
    rate: RateLimiter,
    /// Origins that answered 429/503, refused until their `Retry-After`.
    backoff: ServiceBackoff,
    headers: Vec<SecretHeader>,
    /// `(value, NAME)` of every secret used, longest first, for scrubbing.
    secrets: Secrets,
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
        // Longest first, so a secret containing another is replaced whole.
        used.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
        used.retain(|(v, _)| !v.is_empty());
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
            secrets: Secrets(used),
        })
    }

    fn origin_of(&self, url: &Url) -> Option<&Origin> {
        self.origins.iter().find(|o| o.matches(url))
    }

    /// Replace every secret value in `text` by `[secret:NAME]`.
    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (value, name) in &self.secrets.0 {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), &format!("[secret:{name}]"));
            }
        }
        out
    }

    fn scrub_bytes(&self, body: Vec<u8>) -> Vec<u8> {
        match String::from_utf8(body) {
            Ok(text) => self.scrub(&text).into_bytes(),
            Err(e) => {
                let bytes = e.into_bytes();
                let lossy = String::from_utf8_lossy(&bytes);
                if self
                    .secrets
                    .0
                    .iter()
                    .any(|(v, _)| lossy.contains(v.as_str()))
                {
                    self.scrub(&lossy).into_bytes()
                } else {
                    bytes
                }
            }
        }
    }
}

/// Requests per minute for one plugin, across its calls (sliding window).
#[derive(Debug)]
struct RateLimiter {
    per_minute: u32,
    sent: Mutex<VecDeque<Instant>>,
}

impl RateLimiter {
    fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_minute,
            sent: Mutex::new(VecDeque::new()),
        }
    }

    fn try_acquire(&self) -> bool {
        let now = Instant::now();
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        while sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            sent.pop_front();
        }
        if sent.len() >= self.per_minute as usize {
            return false;
        }
        sent.push_back(now);
        true
    }
}

/// Per-call http context.
#[derive(Debug, Clone)]
pub struct HttpCtx {
    policy: Arc<HttpPolicy>,
    /// When the plugin's call runs out of time: no request outlives it.
    deadline: Instant,
}

impl HttpCtx {
    /// A context enforcing `policy` for a call that must end by `deadline`.
    pub fn new(policy: Arc<HttpPolicy>, deadline: Instant) -> Self {
        HttpCtx { policy, deadline }
    }
}

/// Implemented by store data that carries an [`HttpCtx`].
pub trait HttpView {
    /// The http context of this store and the call's host-call tape.
    fn http_ctx(&mut self) -> (&mut HttpCtx, &mut Tape);
}

/// Borrowed view implementing the generated `Host` trait.
pub struct Http<'a> {
    ctx: &'a mut HttpCtx,
    tape: &'a mut Tape,
}

impl RecordedError for wit::Error {
    fn code(&self) -> String {
        match self {
            wit::Error::AccessDenied => "access-denied".into(),
            wit::Error::RateLimited => "rate-limited".into(),
            wit::Error::RequestTooLarge => "request-too-large".into(),
            wit::Error::ResponseTooLarge => "response-too-large".into(),
            wit::Error::Timeout => "timeout".into(),
            wit::Error::InvalidRequest(why) => format!("invalid-request: {why}"),
            wit::Error::ConnectionFailed(why) => format!("connection-failed: {why}"),
        }
    }
    fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "access-denied" => wit::Error::AccessDenied,
            "rate-limited" => wit::Error::RateLimited,
            "request-too-large" => wit::Error::RequestTooLarge,
            "response-too-large" => wit::Error::ResponseTooLarge,
            "timeout" => wit::Error::Timeout,
            _ => {
                if let Some(why) = code.strip_prefix("invalid-request: ") {
                    wit::Error::InvalidRequest(why.to_owned())
                } else {
                    wit::Error::ConnectionFailed(
                        code.strip_prefix("connection-failed: ")?.to_owned(),
                    )
                }
            }
        })
    }
    fn access_denied() -> Self {
        wit::Error::AccessDenied
    }
}

/// A body as recorded: text when it is UTF-8, else hex; always its SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RecordedBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body_hex: Option<String>,
    body_sha256: String,
}

impl RecordedBody {
    fn of(bytes: &[u8]) -> Self {
        let (body, body_hex) = match std::str::from_utf8(bytes) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (None, Some(hex::encode(bytes))),
        };
        RecordedBody {
            body,
            body_hex,
            body_sha256: hex::encode(Sha256::digest(bytes)),
        }
    }

    fn bytes(&self) -> Option<Vec<u8>> {
        if let Some(text) = &self.body {
            return Some(text.as_bytes().to_vec());
        }
        hex::decode(self.body_hex.as_deref()?).ok()
    }
}

/// What the host records as the result of a `send`, and replays from.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RecordedResponse {
    status: u16,
    headers: Vec<(String, String)>,
    #[serde(flatten)]
    body: RecordedBody,
    /// The URL that answered (after redirects).
    url: String,
    redirects: u32,
    latency_ms: u64,
    bytes: u64,
    /// Headers the host set, as templates: `authorization: Bearer ${AI_API_KEY}`.
    host_headers: Vec<(String, String)>,
}

impl RecordedResponse {
    fn into_wit(self) -> Result<wit::Response, wit::Error> {
        let body = self.body.bytes().ok_or_else(|| {
            wit::Error::ConnectionFailed("the recorded response body is not decodable".into())
        })?;
        Ok(wit::Response {
            status: self.status,
            headers: self.headers,
            body,
        })
    }
}

impl wit::Host for Http<'_> {
    fn send(&mut self, request: wit::Request) -> Result<wit::Response, wit::Error> {
        let ctx = &*self.ctx;
        let headers: Vec<(String, String)> = request
            .headers
            .iter()
            .take(MAX_HEADERS)
            .map(|(k, v)| (ctx.policy.scrub(k), ctx.policy.scrub(v)))
            .collect();
        let body = RecordedBody::of(&request.body);
        let args = json!({
            "method": request.method,
            "url": ctx.policy.scrub(&request.url),
            "headers": headers,
            "body": body.body.as_deref().map(|b| ctx.policy.scrub(b)),
            "body_hex": body.body_hex,
            "body_sha256": body.body_sha256,
        });
        let recorded = self
            .tape
            .call_detailed(Capability::Http, "send", args, || send(ctx, &request))?;
        recorded.into_wit()
    }
}

/// `access-denied` with the rule that refused.
fn denied(detail: String) -> Refusal<wit::Error> {
    Refusal {
        error: wit::Error::AccessDenied,
        detail: Some(detail),
    }
}

fn invalid(why: String) -> Refusal<wit::Error> {
    wit::Error::InvalidRequest(why).into()
}

/// Resolve `name`, giving up at `until`. The system resolver blocks with
/// its own (long) timeout, and a plugin choosing names under a `*.suffix`
/// grant could pick slow ones; so the lookup runs on a short-lived thread
/// and the call stops waiting at its deadline (the thread ends when the
/// resolver does; nobody reads its answer).
fn resolve_until(
    name: &str,
    port: u16,
    until: Instant,
) -> Result<Vec<SocketAddr>, Refusal<wit::Error>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let owned = name.to_owned();
    std::thread::Builder::new()
        .name("vigil-resolve".into())
        .spawn(move || {
            let _ = tx.send(
                (owned.as_str(), port)
                    .to_socket_addrs()
                    .map(Iterator::collect),
            );
        })
        .map_err(|e| wit::Error::ConnectionFailed(format!("resolving {name}: {e}")))?;
    match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(e)) => Err(wit::Error::ConnectionFailed(format!("resolving {name}: {e}")).into()),
        Err(_) => Err(Refusal {
            error: wit::Error::Timeout,
            detail: Some(format!(
                "resolving {name} did not finish within the request's time"
            )),
        }),
    }
}

/// Check the URL against the grant and resolve it (by `until`) to
/// addresses the grant allows; the connection goes to exactly these.
fn checked_addresses(
    policy: &HttpPolicy,
    url: &Url,
    until: Instant,
) -> Result<Vec<SocketAddr>, Refusal<wit::Error>> {
    let origin = policy.origin_of(url).ok_or_else(|| {
        denied(format!(
            "origin {} is not granted",
            url.origin().ascii_serialization()
        ))
    })?;
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(v4)) => vec![SocketAddr::new(IpAddr::V4(v4), port)],
        Some(url::Host::Ipv6(v6)) => vec![SocketAddr::new(IpAddr::V6(v6), port)],
        Some(url::Host::Domain(name)) => resolve_until(name, port, until)?,
        None => return Err(invalid("the URL has no host".into())),
    };
    // Every address must pass: a name that resolves to a public and a
    // private address (DNS rebinding) is refused as a whole.
    for addr in &addrs {
        if let Some(kind) = non_public(addr.ip())
            && origin.ip() != Some(addr.ip())
        {
            return Err(denied(format!(
                "{} resolved to {} ({kind}), which only an origin naming that address may reach",
                url.host_str().unwrap_or_default(),
                addr.ip()
            )));
        }
    }
    if addrs.is_empty() {
        return Err(wit::Error::ConnectionFailed("the name resolved to no address".into()).into());
    }
    Ok(addrs)
}

/// The live request: checks, then the exchange with redirects.
fn send(ctx: &HttpCtx, request: &wit::Request) -> Result<RecordedResponse, Refusal<wit::Error>> {
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
    let mut first_hop = Some(checked_addresses(policy, &url, resolve_by)?);
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
            None => checked_addresses(policy, &url, Instant::now() + remaining)?,
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

/// `HasData` marker for the http capability.
pub struct HttpData;

impl HasData for HttpData {
    type Data<'a> = Http<'a>;
}

/// Link `vigil:plugin/http`.
pub fn add_to_linker<T: HttpView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HttpData>(linker, |t| {
        let (ctx, tape) = t.http_ctx();
        Http { ctx, tape }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("url")
    }

    #[test]
    fn origins_match_scheme_host_and_port_exactly_or_by_subdomain() {
        let exact = Origin::parse("https://api.example.com").expect("valid");
        assert!(exact.matches(&url("https://api.example.com/v1/chat")));
        assert!(exact.matches(&url("https://API.example.com:443/")));
        assert!(!exact.matches(&url("http://api.example.com/")));
        assert!(!exact.matches(&url("https://api.example.com:8443/")));
        assert!(!exact.matches(&url("https://api.example.com.evil.net/")));
        let wild = Origin::parse("https://*.example.com").expect("valid");
        assert!(wild.matches(&url("https://a.b.example.com/")));
        assert!(!wild.matches(&url("https://example.com/")));
        assert!(!wild.matches(&url("https://badexample.com/")));
        let ip = Origin::parse("http://127.0.0.1:8080").expect("valid");
        assert!(ip.matches(&url("http://127.0.0.1:8080/x")));
        assert_eq!(ip.ip(), Some("127.0.0.1".parse().expect("ip")));
    }

    #[test]
    fn malformed_origins_say_what_is_wrong() {
        for (bad, says) in [
            ("api.example.com", "must look like"),
            ("ftp://x.org", "scheme"),
            ("https://x.org/path", "no path"),
            ("https://x.*.org", "wildcard"),
            ("https://x.org:99999", "port"),
        ] {
            let err = Origin::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn non_public_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(non_public(ip.parse().expect("ip")).is_some(), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111"] {
            assert!(non_public(ip.parse().expect("ip")).is_none(), "{ip}");
        }
    }

    #[test]
    fn header_templates_need_secrets_and_scrub_them_and_debug_hides_them() {
        let grant = HttpGrant {
            origins: vec!["https://api.example.com".into()],
            methods: vec!["POST".into()],
            headers: vec![crate::policy::HttpHeaderGrant {
                origin: "https://api.example.com".into(),
                name: "Authorization".into(),
                value: "Bearer ${VIGIL_TEST_UNSET_SECRET}".into(),
            }],
            ..HttpGrant::default()
        };
        let err = HttpPolicy::resolve(&grant, &SecretSource::default()).unwrap_err();
        assert!(err.contains("VIGIL_TEST_UNSET_SECRET"), "{err}");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("secrets.toml");
        std::fs::write(&file, "VIGIL_TEST_UNSET_SECRET = \"sk-123456\"\n").expect("write");
        let policy = Policy {
            secrets: crate::policy::SecretsConfig { file: Some(file) },
            ..Policy::default()
        };
        let source = SecretSource::from_policy(&policy).expect("reads");
        let resolved = HttpPolicy::resolve(&grant, &source).expect("resolves");
        assert_eq!(resolved.headers[0].value, "Bearer sk-123456");
        assert_eq!(
            resolved.scrub("echo: Bearer sk-123456"),
            "echo: Bearer [secret:VIGIL_TEST_UNSET_SECRET]"
        );
        assert!(!format!("{resolved:?} {source:?}").contains("sk-123456"));
    }

    #[test]
    fn a_secret_header_must_be_bound_to_a_granted_origin() {
        let grant = HttpGrant {
            origins: vec!["https://api.example.com".into()],
            headers: vec![crate::policy::HttpHeaderGrant {
                origin: "https://other.example.com".into(),
                name: "Authorization".into(),
                value: "x".into(),
            }],
            ..HttpGrant::default()
        };
        let err = HttpPolicy::validate(&grant).unwrap_err();
        assert!(err.contains("not in `origins`"), "{err}");
    }

    #[test]
    fn the_rate_limit_counts_requests_in_the_last_minute() {
        let rate = RateLimiter::new(2);
        assert!(rate.try_acquire());
        assert!(rate.try_acquire());
        assert!(!rate.try_acquire());
    }
}
