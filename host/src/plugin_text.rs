//! Text a plugin controls, made safe to show.
//!
//! Plugin log messages, error strings, finding rule ids, titles, evidence
//! and enrichment summaries reach terminals (the host's stderr, `vigil
//! audit show`, `vigil test`, `vigil replay`) and line-oriented files. Shown
//! raw, a newline lets a plugin print a line that looks like the host's own
//! (`vigil: 1070 events read, 0 findings, ...`), an ESC sequence rewrites
//! the terminal, a bidi override reverses what follows, and a 40 MB error
//! string floods the log. Everything a plugin says therefore goes through
//! [`PluginText`] on its way to a human: one line, control characters
//! escaped, at most [`MAX_SHOWN_BYTES`]. JSON output (findings on stdout)
//! goes through [`SafeJson`], which escapes the same characters as
//! `\uXXXX` (`serde_json` itself escapes only those below U+0020).

use std::fmt;
use std::io;

/// Most bytes of one plugin-controlled string shown on a terminal.
pub const MAX_SHOWN_BYTES: usize = 4096;

/// Most bytes of a plugin's error message the host keeps (in call errors,
/// quarantine reasons and the audit log).
pub const MAX_ERROR_BYTES: usize = 4096;

/// Plugin-controlled text, displayed as one escaped, clamped line.
#[derive(Debug, Clone, Copy)]
pub struct PluginText<'a>(pub &'a str);

/// Whether `c` must not reach a terminal as it is: C0 and C1 controls,
/// DEL, the Unicode line and paragraph separators, and the bidirectional
/// marks, embeddings, overrides and isolates.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{061c}' | '\u{200e}' | '\u{200f}'
                | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

impl fmt::Display for PluginText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        let shown = floor_char_boundary(text, MAX_SHOWN_BYTES);
        let mut rest = &text[..shown];
        // Copy safe runs whole; escape the characters between them.
        while let Some(at) = rest.find(is_unsafe) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().expect("found a char");
            write!(f, "{}", c.escape_default())?;
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)?;
        if shown < text.len() {
            write!(f, "… ({} more bytes)", text.len() - shown)?;
        }
        Ok(())
    }
}

/// Text with line breaks of its own (a multi-line error that quotes
/// plugin or manifest text): each line shown as [`PluginText`] shows it,
/// the breaks kept.
#[derive(Debug, Clone, Copy)]
pub struct PluginLines<'a>(pub &'a str);

impl fmt::Display for PluginLines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, line) in self.0.split('\n').enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            PluginText(line).fmt(f)?;
        }
        Ok(())
    }
}

/// A `serde_json` formatter that also writes every [`is_unsafe`] character
/// as a `\uXXXX` escape, so JSON Lines read on a terminal carry no raw
/// DEL, C1 control, bidi control or line separator. Same JSON value.
#[derive(Debug, Clone, Copy, Default)]
pub struct SafeJson;

impl serde_json::ser::Formatter for SafeJson {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        while let Some(at) = rest.find(is_unsafe) {
            writer.write_all(&rest.as_bytes()[..at])?;
            let c = rest[at..].chars().next().expect("found a char");
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }
}

/// `value` as one line of JSON with [`SafeJson`] escaping.
pub fn write_safe_json<W: io::Write, T: serde::Serialize>(
    writer: W,
    value: &T,
) -> serde_json::Result<()> {
    let mut serializer = serde_json::Serializer::with_formatter(writer, SafeJson);
    value.serialize(&mut serializer)
}

/// `text` cut to at most `max` bytes at a character boundary, saying how
/// much was cut. For plugin strings the host keeps, not just shows.
pub fn clamp(mut text: String, max: usize) -> String {
    if text.len() > max {
        let total = text.len();
        text.truncate(floor_char_boundary(&text, max));
        text.push_str(&format!("… (cut from {total} bytes)"));
    }
    text
}

/// The largest index `<= max` that is a char boundary of `text`.
fn floor_char_boundary(text: &str, max: usize) -> usize {
    if max >= text.len() {
        return text.len();
    }
    (0..=max)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_escapes_and_bidi_overrides_are_shown_escaped_on_one_line() {
        let forged = "done\nvigil: 1070 events read\r\x1b[2K\u{202e}gnp.exe\0\u{85}";
        let shown = PluginText(forged).to_string();
        assert!(!shown.chars().any(is_unsafe), "{shown}");
        assert_eq!(
            shown,
            r"done\nvigil: 1070 events read\r\u{1b}[2K\u{202e}gnp.exe\u{0}\u{85}"
        );
    }

    #[test]
    fn json_lines_carry_no_raw_bidi_c1_or_line_separator_and_parse_back_the_same() {
        let text = "a\u{202e}b\u{85}c\u{2028}d\u{7f}e\u{1b}f\u{10FFFF}";
        let mut out = Vec::new();
        write_safe_json(&mut out, &serde_json::json!({ "t": text })).expect("write");
        let line = String::from_utf8(out).expect("utf-8");
        assert!(!line.chars().any(is_unsafe), "{line}");
        assert!(
            line.contains(r"\u202e") && line.contains(r"\u2028"),
            "{line}"
        );
        let back: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(back["t"], text);
    }

    #[test]
    fn ordinary_text_is_shown_as_it_is() {
        let text = "Encoded PowerShell — T1059.001 (Grüße, 日本)";
        assert_eq!(PluginText(text).to_string(), text);
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary_saying_how_much() {
        let text = "é".repeat(MAX_SHOWN_BYTES);
        let shown = PluginText(&text).to_string();
        assert!(shown.len() < MAX_SHOWN_BYTES + 40);
        assert!(shown.ends_with(&format!("({} more bytes)", MAX_SHOWN_BYTES)));
        let kept = clamp("E".repeat(40 << 20), MAX_ERROR_BYTES);
        assert!(kept.len() < MAX_ERROR_BYTES + 40, "{}", kept.len());
        assert!(kept.ends_with(&format!("(cut from {} bytes)", 40 << 20)));
    }
}
