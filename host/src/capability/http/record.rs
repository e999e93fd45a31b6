//! What a `send` is recorded as in the audit log, and replayed from.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bindings::vigil::plugin::http as wit;

/// A body as recorded: text when it is UTF-8, else hex; always its SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RecordedBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) body_hex: Option<String>,
    pub(super) body_sha256: String,
}

impl RecordedBody {
    pub(super) fn of(bytes: &[u8]) -> Self {
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

    pub(super) fn bytes(&self) -> Option<Vec<u8>> {
        if let Some(text) = &self.body {
            return Some(text.as_bytes().to_vec());
        }
        hex::decode(self.body_hex.as_deref()?).ok()
    }
}

/// What the host records as the result of a `send`, and replays from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RecordedResponse {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    #[serde(flatten)]
    pub(super) body: RecordedBody,
    /// The URL that answered (after redirects).
    pub(super) url: String,
    pub(super) redirects: u32,
    pub(super) latency_ms: u64,
    pub(super) bytes: u64,
    /// Headers the host set, as templates: `authorization: Bearer ${AI_API_KEY}`.
    pub(super) host_headers: Vec<(String, String)>,
}

impl RecordedResponse {
    pub(super) fn into_wit(self) -> Result<wit::Response, wit::Error> {
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
