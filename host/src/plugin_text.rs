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
//! escaped, at most [`MAX_SHOWN_BYTES`]. JSON output needs none of this
//! (`serde_json` escapes control characters itself).

use std::fmt;

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
/// embedding, override and isolate controls.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
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
