//! Granted origins, and the addresses a request may connect to: the
//! host resolves names itself, with the call's deadline, and refuses
//! non-public addresses unless the origin names that very address.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Instant;

use ipnet::IpNet;
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
        let wildcard = || format!("origin `{text}`: only a leading `*.` wildcard is allowed");
        // The `url` crate normalises the rest exactly as it will normalise
        // request URLs (case, IDNA, default ports, IPv6 forms), so a granted
        // origin and a request are compared in one form. A leading `*.`
        // stands for one or more labels; it is parsed as a placeholder label.
        const ANY: &str = "vigil-any-subdomain";
        let (scheme, rest) = text.split_once("://").ok_or_else(shape)?;
        let (subdomains, rest) = match rest.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, rest),
        };
        if rest.contains('*') {
            return Err(wildcard());
        }
        let prefix = if subdomains {
            format!("{ANY}.")
        } else {
            String::new()
        };
        let url = Url::parse(&format!("{scheme}://{prefix}{rest}")).map_err(|e| match e {
            url::ParseError::InvalidPort => {
                format!("origin `{text}`: the port is not a port number (1-65535)")
            }
            _ if subdomains => format!("{}, before a domain name ({e})", wildcard()),
            _ => format!("{}: {e}", shape()),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("origin `{text}`: scheme must be http or https"));
        }
        if url.path() != "/"
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(format!("{}; an origin has no path, query or user", shape()));
        }
        let host = match url.host() {
            Some(url::Host::Domain(name)) if subdomains => {
                let suffix = name.strip_prefix(&format!("{ANY}.")).ok_or_else(wildcard)?;
                HostPattern::Subdomains(suffix.to_owned())
            }
            Some(url::Host::Domain(name)) => HostPattern::Name(name.to_owned()),
            Some(_) if subdomains => return Err(wildcard()),
            Some(url::Host::Ipv4(v4)) => HostPattern::Ip(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => HostPattern::Ip(IpAddr::V6(v6)),
            None => return Err(shape()),
        };
        Ok(Origin {
            scheme: url.scheme().to_owned(),
            host,
            port: url.port_or_known_default().ok_or_else(shape)?,
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

/// Address blocks a request may not reach unless its origin names the
/// address itself: IANA's special-purpose registries for IPv4 and IPv6
/// (RFC 6890 and its updates), with why each is not public. IPv4-mapped
/// IPv6 addresses are checked as the IPv4 address they carry.
const NON_PUBLIC: &[(&str, &str)] = &[
    ("0.0.0.0/8", "unspecified (\"this network\")"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (carrier-grade NAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved (and broadcast)"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    (
        "64:ff9b::/96",
        "IPv4/IPv6 translation (reaches IPv4 addresses)",
    ),
    ("64:ff9b:1::/48", "IPv4/IPv6 translation (local use)"),
    ("100::/64", "discard-only"),
    ("2001::/23", "IETF protocol assignments (Teredo included)"),
    ("2001:db8::/32", "documentation"),
    ("2002::/16", "6to4 (reaches IPv4 addresses)"),
    ("fc00::/7", "private (unique local)"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
];

/// [`NON_PUBLIC`], parsed once.
static NON_PUBLIC_NETS: std::sync::LazyLock<Vec<(IpNet, &'static str)>> =
    std::sync::LazyLock::new(|| {
        (NON_PUBLIC.iter())
            .map(|(net, why)| (net.parse().expect("a valid network in NON_PUBLIC"), *why))
            .collect()
    });

/// Why `ip` is not a public address, if it is not.
pub(super) fn non_public(ip: IpAddr) -> Option<&'static str> {
    if let IpAddr::V6(v6) = ip
        && let Some(v4) = v6.to_ipv4_mapped()
    {
        return non_public(IpAddr::V4(v4));
    }
    (NON_PUBLIC_NETS.iter())
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, why)| *why)
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
