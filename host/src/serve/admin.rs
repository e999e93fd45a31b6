//! The admin API of `vigil serve`: `GET /status`, `GET /metrics`,
//! `POST /reload`, `POST /revoke`, `POST /restore`.
//!
//! Loopback by default. Bound to any other address only with a bearer
//! token (`[serve.admin] token_file` or `token_env`): the service refuses
//! to start otherwise ([`admin_token`]), and with a token every request
//! must carry `Authorization: Bearer <token>` (401 otherwise), loopback
//! included.
//!
//! A revocation through the API is the same change `vigil revoke` makes
//! (`revocation::apply` on the host's state dir): the host's watcher
//! applies it within a second and its audit stage records it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::capability::Capability;
use crate::control::reload::{Outcome, ReloadAll};
use crate::control::status::HostStatus;
use crate::load::policy::AuditConfig;
use crate::load::service::AdminConfig;
use crate::revocation::{self, Action, ChangeRequest, Recorded};

use super::ingest::Ingest;
use super::metrics::Metrics;

/// What the admin API reads and changes.
#[derive(Clone)]
pub struct Admin {
    /// The host's status now.
    pub status: Arc<dyn Fn() -> HostStatus + Send + Sync>,
    /// Reload every pack directory (`trigger` names who asked).
    pub reload: ReloadAll,
    /// The service's metrics.
    pub metrics: Arc<Metrics>,
    /// The ingest queue (for its gauges).
    pub ingest: Ingest,
    /// Where grant changes are made and recorded.
    pub grants: GrantTarget,
    /// The bearer token every request must carry, if any.
    pub token: Option<Arc<str>>,
}

/// The state dir whose revocation list the API edits.
#[derive(Debug, Clone)]
pub struct GrantTarget {
    /// The host's state dir.
    pub state_dir: PathBuf,
    /// Its audit configuration.
    pub audit: AuditConfig,
    /// Its audit log.
    pub audit_dir: PathBuf,
}

/// Why the admin API cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A non-loopback address without a token.
    #[error(
        "[serve.admin] listen = \"{0}\" is not a loopback address: set token_file or token_env \
         (a bearer token every request must carry), or listen on 127.0.0.1"
    )]
    NoToken(SocketAddr),
    /// The token could not be read, or is empty.
    #[error("[serve.admin] {0}")]
    Token(String),
}

/// The bearer token the config names (`None`: no token, loopback only).
pub fn admin_token(config: &AdminConfig) -> Result<Option<Arc<str>>, AdminError> {
    let token = match (&config.token_file, &config.token_env) {
        (Some(file), _) => Some(
            std::fs::read_to_string(file)
                .map_err(|e| AdminError::Token(format!("token_file {}: {e}", file.display())))?,
        ),
        (None, Some(var)) => Some(std::env::var(var).map_err(|_| {
            AdminError::Token(format!("token_env: environment variable {var} is not set"))
        })?),
        (None, None) => None,
    };
    let token = token.map(|t| t.trim().to_owned());
    if token.as_deref() == Some("") {
        return Err(AdminError::Token("the token is empty".into()));
    }
    if token.is_none() && !config.listen.ip().is_loopback() {
        return Err(AdminError::NoToken(config.listen));
    }
    Ok(token.map(Arc::from))
}

impl Admin {
    /// The routes, behind the token check.
    pub fn router(self) -> Router {
        let state = Arc::new(self);
        Router::new()
            .route("/status", get(status))
            .route("/metrics", get(metrics))
            .route("/reload", post(reload))
            .route("/revoke", post(revoke))
            .route("/restore", post(restore))
            .layer(middleware::from_fn_with_state(state.clone(), authorize))
            .with_state(state)
    }
}

/// Equal in time independent of where they differ (a token compare; the
/// `subtle` crate would do the same for these few lines).
fn same_token(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authorize(State(admin): State<Arc<Admin>>, request: Request, next: Next) -> Response {
    if let Some(token) = &admin.token {
        let given = (request.headers().get(header::AUTHORIZATION))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same_token(g.as_bytes(), token.as_bytes())) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "missing or wrong bearer token (`Authorization: Bearer <token>`)\n",
            )
                .into_response();
        }
    }
    next.run(request).await
}

async fn status(State(admin): State<Arc<Admin>>) -> Response {
    axum::Json((admin.status)()).into_response()
}

async fn metrics(State(admin): State<Arc<Admin>>) -> Response {
    let text = (admin.metrics).render(admin.ingest.queued_bytes(), admin.ingest.waiting());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn reload(State(admin): State<Arc<Admin>>) -> Response {
    let run = admin.reload.clone();
    let outcomes = tokio::task::spawn_blocking(move || run("admin: POST /reload")).await;
    match outcomes {
        Ok(outcomes) => {
            let body: Vec<serde_json::Value> = (outcomes.into_iter())
                .map(|(dir, outcome)| {
                    let reasons = match &outcome {
                        Outcome::Refused { reasons } => reasons.clone(),
                        _ => Vec::new(),
                    };
                    serde_json::json!({
                        "dir": dir.display().to_string(),
                        "outcome": outcome.name(),
                        "reasons": reasons,
                    })
                })
                .collect();
            axum::Json(body).into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload failed: {e}\n"),
        )
            .into_response(),
    }
}

/// The body of `POST /revoke` and `POST /restore`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantRequest {
    /// Plugin id or `pack/plugin`.
    plugin: String,
    /// One capability; absent: every capability.
    #[serde(default)]
    capability: Option<Capability>,
    /// Why; recorded.
    reason: String,
    /// Who asks (default `admin API`).
    #[serde(default)]
    by: Option<String>,
}

async fn revoke(State(admin): State<Arc<Admin>>, body: axum::body::Bytes) -> Response {
    change_grant(admin, Action::Revoke, body).await
}

async fn restore(State(admin): State<Arc<Admin>>, body: axum::body::Bytes) -> Response {
    change_grant(admin, Action::Restore, body).await
}

async fn change_grant(admin: Arc<Admin>, action: Action, body: axum::body::Bytes) -> Response {
    let request: GrantRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!(
                    "body: {e}; expected {{\"plugin\": \"pack/id\", \"capability\": \"http\", \"reason\": \"...\"}}\n"
                ),
            )
                .into_response();
        }
    };
    let target = admin.grants.clone();
    let applied = tokio::task::spawn_blocking(move || {
        revocation::apply(
            &target.state_dir,
            &target.audit,
            &target.audit_dir,
            ChangeRequest {
                action,
                plugin: request.plugin,
                capability: request.capability,
                reason: request.reason,
                by: request.by.unwrap_or_else(|| "admin API".to_owned()),
                at: jiff::Timestamp::now(),
            },
        )
    })
    .await;
    match applied {
        Ok(Ok(applied)) => axum::Json(serde_json::json!({
            "change": applied.change.id,
            "recorded": match applied.recorded {
                Recorded::Now(_) => "recorded".to_owned(),
                Recorded::ByRunningHost => "recorded by the running host".to_owned(),
                Recorded::Later(why) => format!("not recorded yet: {why}"),
            },
        }))
        .into_response(),
        Ok(Err(e)) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}
