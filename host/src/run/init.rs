//! How a plugin's instances start: from a snapshot taken after `init` at
//! load (`load::preinit`), or running `init` on every fresh instance; and
//! how the pack-load record keeps that, with the host calls the snapshot's
//! `init` made.

use serde::{Deserialize, Serialize};

use crate::capability::tape::HostCall;

/// How a plugin's instances start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum InitMode {
    /// From a snapshot taken after `init` at load; `init` is not called per
    /// instance. `fields` is what `init` declared (detectors).
    Snapshot {
        /// Event fields the detector declared (`None`: whole events).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fields: Option<Vec<String>>,
    },
    /// `init(config)` runs on every fresh instance.
    PerInstance {
        /// Why no snapshot was taken.
        why: String,
    },
}

impl InitMode {
    /// `snapshot` or `per-instance`, for reports.
    pub fn name(&self) -> &'static str {
        match self {
            InitMode::Snapshot { .. } => "snapshot",
            InitMode::PerInstance { .. } => "per-instance",
        }
    }
}

/// How a plugin's instances start, and the host calls its `init` made
/// when it was snapshotted at load (`config`, `files`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitRecord {
    /// Snapshot or per-instance, and why.
    #[serde(flatten)]
    pub mode: InitMode,
    /// Host calls of the snapshot run, answered from here on replay.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_calls: Vec<HostCall>,
}
