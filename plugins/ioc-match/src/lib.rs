//! Matches events against indicator lists supplied through config.
//!
//! Config (each a TOML array of strings; an empty or missing list matches
//! nothing):
//! - `domains`: a name matches when it equals an indicator or is a subdomain
//!   of one (`a.evil.example` matches `evil.example`; `notevil.example` does not).
//! - `ips`: exact IPv4/IPv6 text.
//! - `sha256`: hex digests, compared case-insensitively against the
//!   `SHA256=` part of Sysmon's `Hashes` field.
//!
//! One finding per indicator kind per event: `vigil.ioc.domain`,
//! `vigil.ioc.ip`, `vigil.ioc.hash`.

use std::collections::HashSet;

use vigil_sdk::{Config, Detector, Event, Finding, Findings, PluginError, Severity};

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
    domains: HashSet<String>,
    ips: HashSet<String>,
    sha256: HashSet<String>,
}

impl Detector for IocMatch {
    fn init(config: &Config) -> Result<Self, PluginError> {
        let lowered = |key: &str| -> Result<HashSet<String>, PluginError> {
            Ok(config
                .string_list(key)?
                .into_iter()
                .map(|s| s.trim().trim_end_matches('.').to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect())
        };
        let plugin = IocMatch {
            domains: lowered("domains")?,
            ips: lowered("ips")?,
            sha256: lowered("sha256")?,
        };
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
}
