//! Granted origins, and the addresses a request may connect to: the
//! host resolves names itself, with the call's deadline, and refuses
//! non-public addresses unless the origin names that very address.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Instant;

use url::Url;

use super::{denied, invalid};
use crate::bindings::vigil::plugin::http as wit;
use crate::capability::tape::Refusal;

/// A granted origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: HostPattern,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HostPattern {
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
    pub(super) fn matches(&self, url: &Url) -> bool {
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
    pub(super) fn ip(&self) -> Option<IpAddr> {
        match self.host {
            HostPattern::Ip(ip) => Some(ip),
            _ => None,
        }
    }
}

/// Why `ip` is not a public address, if it is not.
pub(super) fn non_public(ip: IpAddr) -> Option<&'static str> {
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

/// Resolve `name`, giving up at `until`. The system resolver blocks with
/// its own (long) timeout, and a plugin choosing names under a `*.suffix`
/// grant could pick slow ones; so the lookup runs on a short-lived thread
/// and the call stops waiting at its deadline (the thread ends when the
/// resolver does; nobody reads its answer).
pub(super) fn resolve_until(
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

/// Check the URL against the grant (`origin`: the granted origin it
/// matches, if any) and resolve it (by `until`) to addresses the grant
/// allows; the connection goes to exactly these.
pub(super) fn checked_addresses(
    origin: Option<&Origin>,
    url: &Url,
    until: Instant,
) -> Result<Vec<SocketAddr>, Refusal<wit::Error>> {
    let origin = origin.ok_or_else(|| {
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
