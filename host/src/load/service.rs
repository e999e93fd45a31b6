//! The `[serve]` table of `vigil.toml`: how `vigil serve` runs as a
//! service. The rest of the file is the operator policy (`policy.rs`), so
//! one file says what runs, what it may do, and where events come from.
//!
//! ```toml
//! [serve]
//! packs_dir = "packs"            # one sub-directory per pack, watched and hot-reloaded
//! run_pack_tests = true          # a new generation must pass the pack's own test cases
//! reload_settle_ms = 50          # quiet time after a burst of file events before reloading
//!
//! [serve.ingest]                 # HTTP ingest: POST /ingest, NDJSON body
//! listen = "127.0.0.1:8400"
//! max_body_bytes = 8388608       # larger bodies get 413
//! queue_bytes = 67108864         # accepted, not yet in the audit log; beyond it 429 + Retry-After
//!
//! [serve.admin]                  # GET /status, GET /metrics, POST /reload, /revoke, /restore
//! listen = "127.0.0.1:8401"      # off loopback only with a token
//! token_file = "/etc/vigil/admin-token"  # or token_env = "VIGIL_ADMIN_TOKEN"
//!
//! [serve.output]                 # findings as JSON Lines; absent: standard output
//! path = "findings.jsonl"
//! rotate_bytes = 104857600       # start a new file past this size (0: never)
//! keep = 5                       # rotated files kept: findings.jsonl.1 (newest) .. .5
//!
//! [serve.webhook]                # findings also POSTed as JSON Lines (at least once)
//! url = "https://siem.example/vigil"
//! batch = 100                    # findings per request
//! max_queue = 10000              # waiting findings; past it counted + recorded (`sink-overflow`)
//! timeout_ms = 5000              # per request; failures retried from 100 ms doubling to 30 s
//! drain_ms = 10000               # how long a stopping host keeps trying
//! ```
//!
//! Relative paths are taken from the working directory, as `state_dir` is.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[serve]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// The packs directory: each sub-directory holding a `pack.toml` is a
    /// pack; added, changed and removed ones are reloaded while serving.
    pub packs_dir: PathBuf,
    /// Whether a new generation must pass the pack's own test cases before
    /// it becomes current (default true).
    #[serde(default)]
    pub run_pack_tests: Option<bool>,
    /// Quiet time after file events before a reload, ms (default 50).
    #[serde(default)]
    pub reload_settle_ms: Option<u64>,
    /// HTTP ingest; absent: none.
    #[serde(default)]
    pub ingest: Option<IngestConfig>,
    /// The admin API; absent: none.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Where findings go; absent: standard output.
    #[serde(default)]
    pub output: Option<OutputConfig>,
    /// Findings also POSTed to a webhook; absent: none.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
}

/// `[serve.webhook]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The endpoint (`http://` or `https://`); findings are POSTed as
    /// JSON Lines.
    pub url: String,
    /// Findings per request (default 100).
    #[serde(default)]
    pub batch: Option<usize>,
    /// Findings waiting for delivery (default 10000); past it a finding is
    /// not queued, and that is counted and recorded.
    #[serde(default)]
    pub max_queue: Option<usize>,
    /// One request's timeout, ms (default 5000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// How long a stopping host keeps trying, ms (default 10000).
    #[serde(default)]
    pub drain_ms: Option<u64>,
}

impl WebhookConfig {
    /// Findings per request.
    pub fn batch(&self) -> usize {
        self.batch.unwrap_or(100).max(1)
    }
    /// Queue bound.
    pub fn max_queue(&self) -> usize {
        self.max_queue.unwrap_or(10_000).max(1)
    }
    /// Request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.unwrap_or(5000).max(1))
    }
    /// Drain time on stop.
    pub fn drain(&self) -> Duration {
        Duration::from_millis(self.drain_ms.unwrap_or(10_000))
    }
}

/// `[serve.ingest]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest request body (default 8 MiB).
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
    /// Most bytes accepted and not yet in the audit log (default 64 MiB);
    /// past it requests get 429 with `Retry-After`.
    #[serde(default)]
    pub queue_bytes: Option<usize>,
}

/// `[serve.admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on; not a loopback address only with a token.
    pub listen: SocketAddr,
    /// A file holding the bearer token (surrounding whitespace ignored).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// An environment variable holding the bearer token.
    #[serde(default)]
    pub token_env: Option<String>,
}

/// `[serve.output]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// The JSON Lines file findings are appended to.
    pub path: PathBuf,
    /// Rotate past this many bytes (default 100 MiB; 0: never).
    #[serde(default)]
    pub rotate_bytes: Option<u64>,
    /// Rotated files kept (default 5).
    #[serde(default)]
    pub keep: Option<u32>,
}

impl ServeConfig {
    /// Whether reloads run the pack's test cases.
    pub fn run_pack_tests(&self) -> bool {
        self.run_pack_tests.unwrap_or(true)
    }

    /// The watcher's settle time.
    pub fn reload_settle(&self) -> Duration {
        Duration::from_millis(self.reload_settle_ms.unwrap_or(50).clamp(1, 10_000))
    }

    /// Checked as written: `Err(why)`, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(ingest) = &self.ingest {
            if ingest.max_body_bytes == Some(0) {
                return Err("[serve.ingest] max_body_bytes must be at least 1".into());
            }
            if ingest
                .queue_bytes
                .is_some_and(|q| q < ingest.max_body_bytes())
            {
                return Err(
                    "[serve.ingest] queue_bytes must be at least max_body_bytes (or no body fits)"
                        .into(),
                );
            }
        }
        if let Some(webhook) = &self.webhook
            && !(webhook.url.starts_with("http://") || webhook.url.starts_with("https://"))
        {
            return Err(format!(
                "[serve.webhook] url = \"{}\" must start with http:// or https://",
                webhook.url
            ));
        }
        if let Some(admin) = &self.admin
            && admin.token_file.is_some()
            && admin.token_env.is_some()
        {
            return Err("[serve.admin] set token_file or token_env, not both".into());
        }
        Ok(())
    }
}

impl IngestConfig {
    /// Largest request body.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes.unwrap_or(8 << 20)
    }

    /// Bound of accepted bytes not yet in the log.
    pub fn queue_bytes(&self) -> usize {
        self.queue_bytes
            .unwrap_or(64 << 20)
            .max(self.max_body_bytes())
    }
}

impl OutputConfig {
    /// Rotation size; `None` never rotates.
    pub fn rotate_bytes(&self) -> Option<u64> {
        match self.rotate_bytes {
            Some(0) => None,
            Some(n) => Some(n),
            None => Some(100 << 20),
        }
    }

    /// Rotated files kept.
    pub fn keep(&self) -> u32 {
        self.keep.unwrap_or(5)
    }
}
