//! Capability calls as plain functions.
//!
//! On `wasm32` each call goes to the host through the generated imports. On
//! native targets (plugin unit tests) it is served by the in-memory host in
//! [`crate::testing`], so plugin logic runs under `cargo test` without Wasm.

/// Why a capability call was refused or failed (the union of the `error`
/// variants of the capability interfaces). New capabilities add variants,
/// so match with a `_` arm.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CapabilityError {
    /// Not granted for this resource (key outside the granted prefixes,
    /// capability revoked).
    AccessDenied,
    /// Too many calls in this batch (log).
    RateLimited,
    /// Store full for this plugin (state).
    QuotaExceeded,
    /// The host could not serve the call; the text says why.
    Unavailable(String),
    /// Nothing at that path (files).
    NotFound,
    /// The file is larger than the grant allows (files).
    TooLarge,
}

impl std::fmt::Display for CapabilityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CapabilityError::AccessDenied => f.write_str("access denied"),
            CapabilityError::RateLimited => f.write_str("rate limited"),
            CapabilityError::QuotaExceeded => f.write_str("quota exceeded"),
            CapabilityError::Unavailable(why) => write!(f, "unavailable: {why}"),
            CapabilityError::NotFound => f.write_str("not found"),
            CapabilityError::TooLarge => f.write_str("too large"),
        }
    }
}

impl std::error::Error for CapabilityError {}

/// Structured logging into the host log (capability `log`).
pub mod log {
    pub use super::CapabilityError;

    /// Log level, least severe first.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    pub enum Level {
        /// Trace.
        Trace,
        /// Debug.
        Debug,
        /// Info.
        Info,
        /// Warn.
        Warn,
        /// Error.
        Error,
    }

    /// Write one record. Errors (budget exhausted, revoked) are returned so a
    /// plugin may stop logging; ignoring them is safe.
    pub fn emit(
        level: Level,
        message: &str,
        fields: &[(&str, &str)],
    ) -> Result<(), CapabilityError> {
        imp::emit(level, message, fields)
    }

    /// Info-level record without fields; errors ignored.
    pub fn info(message: &str) {
        let _ = emit(Level::Info, message, &[]);
    }

    /// Warn-level record without fields; errors ignored.
    pub fn warn(message: &str) {
        let _ = emit(Level::Warn, message, &[]);
    }

    #[cfg(target_arch = "wasm32")]
    mod imp {
        use super::{CapabilityError, Level};
        use crate::bindings::vigil::plugin::log as wit;

        pub fn emit(
            level: Level,
            message: &str,
            fields: &[(&str, &str)],
        ) -> Result<(), CapabilityError> {
            let level = match level {
                Level::Trace => wit::Level::Trace,
                Level::Debug => wit::Level::Debug,
                Level::Info => wit::Level::Info,
                Level::Warn => wit::Level::Warn,
                Level::Error => wit::Level::Error,
            };
            let fields: Vec<(String, String)> = fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            wit::emit(level, message, &fields).map_err(|e| match e {
                wit::Error::AccessDenied => CapabilityError::AccessDenied,
                wit::Error::RateLimited => CapabilityError::RateLimited,
            })
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    mod imp {
        pub use crate::testing::native::log_emit as emit;
    }
}

/// The plugin's own configuration (capability `config`).
pub mod config {
    pub use super::CapabilityError;

    /// The value of `key`, as text, or `None` when unset.
    pub fn get(key: &str) -> Result<Option<String>, CapabilityError> {
        imp::get(key)
    }

    #[cfg(target_arch = "wasm32")]
    mod imp {
        use super::CapabilityError;
        use crate::bindings::vigil::plugin::config as wit;

        pub fn get(key: &str) -> Result<Option<String>, CapabilityError> {
            wit::get(key).map_err(|wit::Error::AccessDenied| CapabilityError::AccessDenied)
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    mod imp {
        pub use crate::testing::native::config_get as get;
    }
}

/// Per-plugin persistent key-value state (capability `state`).
pub mod state {
    pub use super::CapabilityError;

    /// The value under `key`, or `None` when absent or expired.
    pub fn get(key: &str) -> Result<Option<String>, CapabilityError> {
        imp::get(key)
    }

    /// Store `value` under `key`; with `ttl_seconds` it expires after that long.
    pub fn set(key: &str, value: &str, ttl_seconds: Option<u64>) -> Result<(), CapabilityError> {
        imp::set(key, value, ttl_seconds)
    }

    /// Remove `key` (absent keys are fine).
    pub fn delete(key: &str) -> Result<(), CapabilityError> {
        imp::delete(key)
    }

    #[cfg(target_arch = "wasm32")]
    mod imp {
        use super::CapabilityError;
        use crate::bindings::vigil::plugin::state as wit;

        fn convert(e: wit::Error) -> CapabilityError {
            match e {
                wit::Error::AccessDenied => CapabilityError::AccessDenied,
                wit::Error::QuotaExceeded => CapabilityError::QuotaExceeded,
                wit::Error::Unavailable(why) => CapabilityError::Unavailable(why),
            }
        }

        pub fn get(key: &str) -> Result<Option<String>, CapabilityError> {
            wit::get(key).map_err(convert)
        }

        pub fn set(key: &str, value: &str, ttl: Option<u64>) -> Result<(), CapabilityError> {
            wit::set(key, value, ttl).map_err(convert)
        }

        pub fn delete(key: &str) -> Result<(), CapabilityError> {
            wit::delete(key).map_err(convert)
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    mod imp {
        pub use crate::testing::native::{
            state_delete as delete, state_get as get, state_set as set,
        };
    }
}

/// Host-supplied time (capability `clock`).
pub mod clock {
    pub use super::CapabilityError;

    /// Wall-clock time, nanoseconds since the Unix epoch.
    pub fn wall_now() -> Result<u64, CapabilityError> {
        imp::wall_now()
    }

    /// Monotonic nanoseconds from a host-chosen start.
    pub fn monotonic_now() -> Result<u64, CapabilityError> {
        imp::monotonic_now()
    }

    #[cfg(target_arch = "wasm32")]
    mod imp {
        use super::CapabilityError;
        use crate::bindings::vigil::plugin::clock as wit;

        pub fn wall_now() -> Result<u64, CapabilityError> {
            wit::wall_now().map_err(|wit::Error::AccessDenied| CapabilityError::AccessDenied)
        }

        pub fn monotonic_now() -> Result<u64, CapabilityError> {
            wit::monotonic_now().map_err(|wit::Error::AccessDenied| CapabilityError::AccessDenied)
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    mod imp {
        pub use crate::testing::native::{
            clock_monotonic_now as monotonic_now, clock_wall_now as wall_now,
        };
    }
}

/// Read-only files below the pack directories the operator granted
/// (capability `files`). Paths are relative to the pack directory and
/// `/`-separated, e.g. `intel/iocs.txt`.
pub mod files {
    pub use super::CapabilityError;

    /// The whole content of the file at `path`.
    pub fn read(path: &str) -> Result<Vec<u8>, CapabilityError> {
        imp::read(path)
    }

    /// The file at `path` as text; invalid UTF-8 is replaced, not an error
    /// (intel lists come from many tools).
    pub fn read_to_string(path: &str) -> Result<String, CapabilityError> {
        read(path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The entries of the directory at `path`, sorted: files by name,
    /// directories with a trailing `/`.
    pub fn list_dir(path: &str) -> Result<Vec<String>, CapabilityError> {
        imp::list_dir(path)
    }

    #[cfg(target_arch = "wasm32")]
    mod imp {
        use super::CapabilityError;
        use crate::bindings::vigil::plugin::files as wit;

        fn convert(e: wit::Error) -> CapabilityError {
            match e {
                wit::Error::AccessDenied => CapabilityError::AccessDenied,
                wit::Error::NotFound => CapabilityError::NotFound,
                wit::Error::TooLarge => CapabilityError::TooLarge,
                wit::Error::Failed(why) => CapabilityError::Unavailable(why),
            }
        }

        pub fn read(path: &str) -> Result<Vec<u8>, CapabilityError> {
            wit::read(path).map_err(convert)
        }

        pub fn list_dir(path: &str) -> Result<Vec<String>, CapabilityError> {
            wit::list_dir(path).map_err(convert)
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    mod imp {
        pub use crate::testing::native::{files_list_dir as list_dir, files_read as read};
    }
}
