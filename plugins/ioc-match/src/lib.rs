//! Matches events against indicator lists: files of the pack read through
//! the `files` capability, and lists in config.
//!
//! Config (each a TOML array of strings; an empty or missing list matches
//! nothing):
//! - `lists`: files of the pack (e.g. `["intel/iocs.txt"]`, below a
//!   directory the operator granted with `files = { dirs = ["intel/"] }`),
//!   one indicator per line, `#` starts a comment. A line is a SHA-256 when
//!   it is 64 hex digits, an IP when it parses as one, else a domain.
//! - `domains`: a name matches when it equals an indicator or is a subdomain
//!   of one (`a.evil.example` matches `evil.example`; `notevil.example` does not).
//! - `ips`: exact IPv4/IPv6 text.
//! - `sha256`: hex digests, compared case-insensitively against the
//!   `SHA256=` part of Sysmon's `Hashes` field.
//!
//! The lists are read in `init`, which the host runs once per pack load
//! when it can pre-initialise the plugin, so a large list costs nothing per
//! batch. The sets use a fixed-key hasher: a random one would ask the host
//! for randomness in `init` (see the README on pre-initialisation), and
//! only the operator's indicators are inserted, so there is nothing for an
//! attacker to flood.
//!
//! One finding per indicator kind per event: `vigil.ioc.domain`,
//! `vigil.ioc.ip`, `vigil.ioc.hash`.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, DefaultHasher};
use std::net::IpAddr;

use vigil_sdk::{Config, Detector, Event, Finding, Findings, PluginError, Severity, files};

/// A set of lower-cased indicators.
type Set = HashSet<String, BuildHasherDefault<DefaultHasher>>;

/// Fields holding a domain name, by event shape (Sysmon 22 and 3).
const DOMAIN_FIELDS: [&str; 2] = [
    "Event.EventData.QueryName",
    "Event.EventData.DestinationHostname",
];
/// Fields holding a peer IP (Sysmon 3, Security 4624/4625, Linux auth).
const IP_FIELDS: [&str; 3] = [
    "Event.EventData.DestinationIp",
    "Event.EventData.IpAddress",
    "source.ip",
];
/// Sysmon's `Hashes` field: `SHA1=...,MD5=...,SHA256=...,IMPHASH=...`.
const HASHES_FIELD: &str = "Event.EventData.Hashes";
/// The executable whose hash matched, reported as evidence.
const IMAGE_FIELD: &str = "Event.EventData.Image";

/// The detector with its indicator sets (lower-cased).
pub struct IocMatch {
    domains: Set,
    ips: Set,
    sha256: Set,
}

impl Detector for IocMatch {
    fn init(config: &Config) -> Result<Self, PluginError> {
        let lowered = |key: &str| -> Result<Set, PluginError> {
            Ok(config
                .string_list(key)?
                .iter()
                .filter_map(|s| normalise(s))
                .collect())
        };
        let mut plugin = IocMatch {
            domains: lowered("domains")?,
            ips: lowered("ips")?,
            sha256: lowered("sha256")?,
        };
        for path in config.string_list("lists")? {
            let text = files::read_to_string(&path)
                .map_err(|e| PluginError::InvalidConfig(format!("`lists` entry {path:?}: {e}")))?;
            plugin.add_list(&text);
        }
        if let Some(bad) = plugin
            .sha256
            .iter()
            .find(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(PluginError::InvalidConfig(format!(
                "`sha256` entry `{bad}` is not a 64-digit hex SHA-256 digest"
            )));
        }
        Ok(plugin)
    }

    fn fields(&self) -> Option<Vec<String>> {
        let mut fields: Vec<String> = DOMAIN_FIELDS
            .iter()
            .chain(&IP_FIELDS)
            .map(|f| (*f).to_owned())
            .collect();
        fields.push(HASHES_FIELD.to_owned());
        fields.push(IMAGE_FIELD.to_owned());
        Some(fields)
    }

    fn detect(&mut self, event: &Event<'_>, findings: &mut Findings) {
        if let Some((field, name, indicator)) = DOMAIN_FIELDS
            .iter()
            .filter_map(|f| Some((*f, event.str(f)?)))
            .find_map(|(f, name)| Some((f, name, self.domain_indicator(name)?)))
        {
            findings.push(
                Finding::new(
                    "vigil.ioc.domain",
                    "Contact with a known-bad domain",
                    Severity::High,
                )
                .technique("T1071.004")
                .evidence(leaf(field), name)
                .evidence("Indicator", indicator),
            );
        }
        if let Some((field, ip)) = IP_FIELDS
            .iter()
            .filter_map(|f| Some((*f, event.str(f)?)))
            .find(|(_, ip)| self.ips.contains(&ip.to_ascii_lowercase()))
        {
            findings.push(
                Finding::new(
                    "vigil.ioc.ip",
                    "Contact with a known-bad IP address",
                    Severity::High,
                )
                .technique("T1071")
                .evidence(leaf(field), ip)
                .evidence("Indicator", ip),
            );
        }
        if let Some(digest) = event.str(HASHES_FIELD).and_then(sha256_of) {
            let digest = digest.to_ascii_lowercase();
            if self.sha256.contains(&digest) {
                findings.push(
                    Finding::new(
                        "vigil.ioc.hash",
                        "Execution of a known-bad file",
                        Severity::Critical,
                    )
                    .technique("T1204.002")
                    .evidence("Image", event.str(IMAGE_FIELD).unwrap_or(""))
                    .evidence("SHA256", digest),
                );
            }
        }
    }
}

vigil_sdk::export_detector!(IocMatch);

impl IocMatch {
    /// Add every indicator of a list file, each to the set its form says.
    fn add_list(&mut self, text: &str) {
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default();
            let Some(indicator) = normalise(line) else {
                continue;
            };
            let set = if indicator.len() == 64 && indicator.bytes().all(|b| b.is_ascii_hexdigit()) {
                &mut self.sha256
            } else if indicator.parse::<IpAddr>().is_ok() {
                &mut self.ips
            } else {
                &mut self.domains
            };
            set.insert(indicator);
        }
    }

    /// The indicator `name` equals or is a subdomain of.
    fn domain_indicator(&self, name: &str) -> Option<&str> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let mut candidate = name.as_str();
        loop {
            if let Some(hit) = self.domains.get(candidate) {
                return Some(hit);
            }
            candidate = candidate.split_once('.')?.1;
        }
    }
}

/// An indicator as the sets hold it: trimmed, without a trailing dot,
/// lower case; `None` when nothing is left.
fn normalise(indicator: &str) -> Option<String> {
    let s = indicator.trim().trim_end_matches('.').to_ascii_lowercase();
    (!s.is_empty()).then_some(s)
}

/// The last segment of a dotted path, used as the evidence key.
fn leaf(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

fn sha256_of(hashes: &str) -> Option<&str> {
    hashes.split(',').find_map(|part| {
        let (algo, value) = part.split_once('=')?;
        algo.trim()
            .eq_ignore_ascii_case("sha256")
            .then(|| value.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_sdk::testing::TestHost;

    fn host() -> TestHost {
        TestHost::new()
            .config("domains", r#"["kxvrnet.top", "Secure-Auth.click."]"#)
            .config("ips", r#"["203.0.113.66"]"#)
            .config(
                "sha256",
                r#"["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]"#,
            )
    }

    fn rules(event: &str) -> Vec<String> {
        host()
            .run::<IocMatch>(event)
            .expect("detect")
            .into_iter()
            .map(|f| f.rule_id)
            .collect()
    }

    #[test]
    fn domains_match_exactly_or_as_subdomains_only() {
        let q = |name: &str| format!(r#"{{"Event":{{"EventData":{{"QueryName":"{name}"}}}}}}"#);
        assert_eq!(rules(&q("kxvrnet.top")), ["vigil.ioc.domain"]);
        assert_eq!(rules(&q("cdn.UPDATE.kxvrnet.top.")), ["vigil.ioc.domain"]);
        assert_eq!(rules(&q("login.secure-auth.click")), ["vigil.ioc.domain"]);
        assert!(rules(&q("notkxvrnet.top")).is_empty());
        assert!(rules(&q("top")).is_empty());
    }

    #[test]
    fn one_finding_per_indicator_kind() {
        let event = r#"{"Event":{"EventData":{"DestinationHostname":"a.kxvrnet.top","DestinationIp":"203.0.113.66",
            "Hashes":"MD5=00,SHA256=9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"}}}"#
            .replace('\n', "");
        assert_eq!(
            rules(&event),
            ["vigil.ioc.domain", "vigil.ioc.ip", "vigil.ioc.hash"]
        );
    }

    #[test]
    fn malformed_indicator_config_is_rejected_with_the_key() {
        let err = TestHost::new()
            .config("sha256", r#"["abc"]"#)
            .run::<IocMatch>("")
            .unwrap_err();
        assert!(matches!(err, PluginError::InvalidConfig(m) if m.contains("sha256")));
        let err = TestHost::new()
            .config("ips", "203.0.113.66")
            .run::<IocMatch>("")
            .unwrap_err();
        assert!(matches!(err, PluginError::InvalidConfig(m) if m.contains("ips")));
    }

    #[test]
    fn list_files_add_indicators_by_their_form() {
        let list = "# intel\nEvil.Example.\n198.51.100.7  # c2\n\n\
                    2C26B46B68FFC68FF99B453C1D30413413422D706483BFA0F98A5E886266E7AE\n";
        let mut host = TestHost::new()
            .config("lists", r#"["intel/iocs.txt"]"#)
            .file("intel/iocs.txt", list.as_bytes());
        let event =
            r#"{"Event":{"EventData":{"QueryName":"x.evil.example","DestinationIp":"198.51.100.7",
            "Hashes":"SHA256=2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"}}}"#
                .replace('\n', "");
        let found: Vec<String> = (host.run::<IocMatch>(&event).expect("detect").into_iter())
            .map(|f| f.rule_id)
            .collect();
        assert_eq!(
            found,
            ["vigil.ioc.domain", "vigil.ioc.ip", "vigil.ioc.hash"]
        );
    }

    #[test]
    fn an_unreadable_list_fails_init_naming_the_file() {
        let err = TestHost::new()
            .config("lists", r#"["intel/missing.txt"]"#)
            .run::<IocMatch>("")
            .unwrap_err();
        assert!(matches!(err, PluginError::InvalidConfig(m) if m.contains("intel/missing.txt")));
    }
}
