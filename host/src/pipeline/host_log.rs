//! What a plugin call says and changes, on the host's own log (`tracing`):
//! its log records and captured stdio, escaped, and its quarantine changes.
//! Detector and enricher calls report the same way.

use crate::capability::log::{LogLevel, LogSource};
use crate::plugin_text::PluginText;
use crate::run::plugin::{CallOutcome, LoadedPlugin, QuarantineChange};

/// Say on the host log what a call changed about the plugin's quarantine.
pub fn log_quarantine_changes<T>(plugin: &LoadedPlugin, outcome: &CallOutcome<T>) {
    let label = plugin.label();
    for change in outcome.before.iter().chain(&outcome.after) {
        match change {
            QuarantineChange::Quarantined {
                reason,
                until,
                backoff,
            } => tracing::error!(
                "plugin {label} QUARANTINED for {} (until {}) after {}; then one call probes it",
                humantime::format_duration(*backoff),
                humantime::format_rfc3339_seconds(*until),
                PluginText(reason)
            ),
            QuarantineChange::Probe { .. } => {
                tracing::warn!("plugin {label}: quarantine back-off over; probing it with one call")
            }
            QuarantineChange::Lifted { reason } => {
                tracing::warn!("plugin {label}: quarantine lifted: {}", PluginText(reason))
            }
        }
    }
}

/// Forward a call's plugin logs and captured stdio to the host log.
pub fn forward_logs<T>(plugin: &LoadedPlugin, outcome: &CallOutcome<T>) {
    let label = plugin.label();
    for log in &outcome.logs {
        let stream = match log.source {
            LogSource::Plugin => "log",
            LogSource::Stdout => "stdout",
            LogSource::Stderr => "stderr",
        };
        // Guest-controlled: escaped, so a message cannot start a line of
        // its own that passes for the host's.
        let fields = (log.fields.iter())
            .map(|(k, v)| format!(" {}=\"{}\"", PluginText(k), PluginText(v)))
            .collect::<String>();
        let message = PluginText(&log.message);
        match log.level {
            LogLevel::Trace => tracing::trace!("[{label} {stream}] {message}{fields}"),
            LogLevel::Debug => tracing::debug!("[{label} {stream}] {message}{fields}"),
            LogLevel::Info => tracing::info!("[{label} {stream}] {message}{fields}"),
            LogLevel::Warn => tracing::warn!("[{label} {stream}] {message}{fields}"),
            LogLevel::Error => tracing::error!("[{label} {stream}] {message}{fields}"),
        }
    }
    if outcome.logs_dropped > 0 {
        tracing::warn!(
            "[{label}] dropped {} log records over the per-call budget",
            outcome.logs_dropped
        );
    }
}
