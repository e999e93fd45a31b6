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
//!
//! Where: `policy.rs` (the resolved grant, rate limit), `origin.rs`
//! (origins, name resolution and the address check), `secrets.rs` (secret
//! header templates), `backoff.rs` (a service's 429/503), `send.rs` (the
//! exchange and redirects), `record.rs` (what the log holds); this file
//! binds them to the interface.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use wasmtime::component::{HasData, Linker};

mod backoff;
mod origin;
mod policy;
mod record;
mod secrets;
mod send;

pub use self::origin::Origin;
pub use self::policy::{HttpGrant, HttpHeaderGrant, HttpPolicy};
use self::record::RecordedBody;
pub use self::secrets::SecretSource;
use super::{CallView, Capability, HostCapability, Setup, SetupMode};
use crate::bindings::vigil::plugin::http as wit;
use crate::capability::tape::{RecordedError, Refusal, Tape};

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
            .call_detailed(Capability::Http, "send", args, || send::send(ctx, &request))?;
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

/// `HasData` marker for the http capability.
pub struct HttpData;

impl HasData for HttpData {
    type Data<'a> = Http<'a>;
}

impl HostCapability for HttpData {
    const SUMMARY: &'static str = "outbound HTTP to granted origins";
    const PREINIT: bool = false;
    type Grant = HttpGrant;
    type Shared = HttpPolicy;
    type Ctx = HttpCtx;

    fn validate(grant: &HttpGrant) -> Result<(), String> {
        HttpPolicy::validate(grant)
    }

    fn resolve(grant: HttpGrant, setup: &Setup<'_>) -> Result<HttpPolicy, String> {
        let secrets = match &setup.mode {
            SetupMode::Live { secrets_file, .. } => SecretSource::from_file(*secrets_file)?,
            // The tape answers every http call in replay; no request is
            // made, so the grant is rebuilt without reading any secret.
            SetupMode::Replay { .. } => SecretSource::placeholders(),
        };
        HttpPolicy::resolve(&grant, &secrets).map_err(|why| format!("http grant: {why}"))
    }

    /// An http grant that loads anyway but allows nothing, or whose timeout
    /// is longer than the plugin's deadline (which then cuts every request
    /// short).
    fn warnings(grant: &HttpGrant, setup: &Setup<'_>) -> Vec<String> {
        let mut warnings = Vec::new();
        for (list, name) in [(&grant.origins, "origins"), (&grant.methods, "methods")] {
            if list.is_empty() {
                warnings.push(format!(
                    "http is granted but its `{name}` list is empty, so every request is denied; \
                     list the {name} it may use"
                ));
            }
        }
        let timeout = grant
            .timeout_ms
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
        if timeout > setup.deadline {
            warnings.push(format!(
                "http timeout_ms ({} ms) exceeds the plugin's deadline ({} ms): requests are cut \
                 at the deadline; raise the plugin's `limits.deadline_ms` or lower `timeout_ms`",
                timeout.as_millis(),
                setup.deadline.as_millis()
            ));
        }
        warnings
    }

    fn start_call(policy: &Arc<HttpPolicy>, deadline: Instant) -> HttpCtx {
        HttpCtx::new(policy.clone(), deadline)
    }

    fn add_to_linker<T: CallView<Self> + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, HttpData>(linker, |t| {
            let (ctx, tape) = t.parts();
            Http { ctx, tape }
        })
    }
}

#[cfg(test)]
mod tests {
    use url::Url;

    use super::origin::non_public;
    use super::policy::RateLimiter;
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
        // Compared in the form `url` gives request URLs: IDNA, case, IPv6.
        let idn = Origin::parse("https://BÜCHER.example").expect("valid");
        assert!(idn.matches(&url("https://xn--bcher-kva.example/")));
        let v6 = Origin::parse("http://[0:0::1]:8080").expect("valid");
        assert!(v6.matches(&url("http://[::1]:8080/")));
    }

    #[test]
    fn malformed_origins_say_what_is_wrong() {
        for (bad, says) in [
            ("api.example.com", "must look like"),
            ("ftp://x.org", "scheme"),
            ("https://x.org/path", "no path"),
            ("https://x.*.org", "wildcard"),
            ("https://x.org:99999", "port"),
            ("https://x.org?q=1", "no path"),
            ("https://user@x.org", "no path"),
            ("https://*.[::1]", "wildcard"),
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
            "198.18.0.1",
            "192.0.2.1",
            "255.255.255.255",
            "224.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "2001:db8::1",
            "2001::1",
            "ff02::1",
        ] {
            assert!(non_public(ip.parse().expect("ip")).is_some(), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
        ] {
            assert!(non_public(ip.parse().expect("ip")).is_none(), "{ip}");
        }
    }

    #[test]
    fn header_templates_need_secrets_and_scrub_them_and_debug_hides_them() {
        let grant = HttpGrant {
            origins: vec!["https://api.example.com".into()],
            methods: vec!["POST".into()],
            headers: vec![HttpHeaderGrant {
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
        let source = SecretSource::from_file(Some(&file)).expect("reads");
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
            headers: vec![HttpHeaderGrant {
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
    fn the_rate_limit_allows_its_count_at_once_then_refuses() {
        let rate = RateLimiter::new(2);
        assert!(rate.try_acquire());
        assert!(rate.try_acquire());
        assert!(!rate.try_acquire());
    }

    #[test]
    fn an_http_grant_that_allows_nothing_or_outlasts_the_deadline_is_warned_about() {
        let setup = Setup {
            pack: "p",
            plugin: "a",
            config: &[],
            log_records_per_call: 100,
            deadline: Duration::from_millis(250),
            clock_origin: Instant::now(),
            mode: SetupMode::Replay {
                scratch: std::path::Path::new("/nonexistent"),
                file_store: std::path::PathBuf::new(),
            },
        };
        let warnings = HttpData::warnings(&HttpGrant::default(), &setup);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(
            warnings[0].contains("`origins` list is empty"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].contains("`methods` list is empty"),
            "{warnings:?}"
        );
        assert!(
            warnings[2].contains("timeout_ms (10000 ms) exceeds the plugin's deadline (250 ms)"),
            "{warnings:?}"
        );
        let fine = HttpGrant {
            origins: vec!["https://api.example.com".into()],
            methods: vec!["POST".into()],
            timeout_ms: Some(200),
            ..HttpGrant::default()
        };
        assert!(HttpData::warnings(&fine, &setup).is_empty());
    }
}
