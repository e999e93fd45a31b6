//! The hash-chain envelope of every audit line.
//!
//! A line is one JSON object:
//!
//! ```text
//! {"seq":7,"time":"2026-11-22T10:00:00.123Z","prev":"<64 hex>","kind":...,"hash":"<64 hex>"}
//! ```
//!
//! `hash` is the SHA-256 of the line's bytes up to (not including) the
//! `,"hash":` suffix, and `prev` is the previous line's `hash` (64 zeros for
//! the first record). Because the hash covers `seq` and `prev`, editing,
//! inserting, deleting or reordering any record breaks the chain at that
//! record. Hashing the exact bytes means no canonical JSON form is needed.

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Length of `,"hash":"<64 hex>"}`.
const SUFFIX_LEN: usize = 9 + 64 + 2;

/// Append one line for `record_json` (a JSON object, as serialized) to
/// `out`, newline included; returns the new record's hash.
pub fn encode(out: &mut Vec<u8>, seq: u64, time: &str, prev: &str, record_json: &[u8]) -> String {
    debug_assert!(record_json.starts_with(b"{") && record_json.ends_with(b"}"));
    let start = out.len();
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.extend_from_slice(b",\"time\":\"");
    out.extend_from_slice(time.as_bytes());
    out.extend_from_slice(b"\",\"prev\":\"");
    out.extend_from_slice(prev.as_bytes());
    out.extend_from_slice(b"\",");
    out.extend_from_slice(&record_json[1..record_json.len() - 1]);
    let hash = hex::encode(Sha256::digest(&out[start..]));
    out.extend_from_slice(b",\"hash\":\"");
    out.extend_from_slice(hash.as_bytes());
    out.extend_from_slice(b"\"}\n");
    hash
}

/// The envelope fields of a line.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Envelope {
    /// Sequence number, from 1, continuous across segments.
    pub seq: u64,
    /// RFC 3339 time the record was written.
    pub time: String,
    /// Hash of the previous record.
    pub prev: String,
    /// Hash of this record.
    pub hash: String,
}

/// Why a line is not a valid chain link on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Not JSON, or the envelope fields are missing.
    #[error("not a complete audit record ({0})")]
    Malformed(String),
    /// The bytes do not hash to the stored `hash`: the record was edited.
    #[error("content does not match its hash (edited)")]
    HashMismatch,
}

/// Check that `line` (without its newline) hashes to its own `hash`, and
/// return its envelope.
pub fn check_line(line: &[u8]) -> Result<Envelope, LineError> {
    let envelope: Envelope =
        serde_json::from_slice(line).map_err(|e| LineError::Malformed(e.to_string()))?;
    if line.len() < SUFFIX_LEN || !line[line.len() - SUFFIX_LEN..].starts_with(b",\"hash\":\"") {
        return Err(LineError::Malformed("`hash` is not the last field".into()));
    }
    let hashed = &line[..line.len() - SUFFIX_LEN];
    if hex::encode(Sha256::digest(hashed)) != envelope.hash {
        return Err(LineError::HashMismatch);
    }
    Ok(envelope)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64, prev: &str, body: &str) -> (Vec<u8>, String) {
        let mut out = Vec::new();
        let hash = encode(
            &mut out,
            seq,
            "2026-11-22T00:00:00.000Z",
            prev,
            body.as_bytes(),
        );
        out.pop();
        (out, hash)
    }

    #[test]
    fn an_encoded_line_checks_and_chains() {
        let (first, h1) = line(1, GENESIS, r#"{"kind":"checkpoint","records":0}"#);
        let env = check_line(&first).expect("valid");
        assert_eq!(
            (env.seq, env.prev.as_str(), env.hash.as_str()),
            (1, GENESIS, h1.as_str())
        );
        let (second, _) = line(2, &h1, r#"{"kind":"x"}"#);
        assert_eq!(check_line(&second).expect("valid").prev, h1);
    }

    #[test]
    fn an_edited_byte_is_a_hash_mismatch() {
        let (mut l, _) = line(1, GENESIS, r#"{"kind":"x","user":"alice"}"#);
        let at = l.windows(5).position(|w| w == b"alice").expect("present");
        l[at] = b'A';
        assert_eq!(check_line(&l), Err(LineError::HashMismatch));
    }

    #[test]
    fn a_cut_line_is_malformed() {
        let (l, _) = line(1, GENESIS, r#"{"kind":"x"}"#);
        assert!(matches!(
            check_line(&l[..l.len() - 10]),
            Err(LineError::Malformed(_))
        ));
    }
}
