//! Capabilities: the host interfaces a plugin may import.
//!
//! Each capability is one module implementing [`HostCapability`] and one
//! line of the registry ([`registry::for_each_capability`]); `registry.rs`
//! says what a module provides and where each part is used. Inside, every
//! module has the same parts (the shape of wasmtime's `wasi-keyvalue` and
//! `wasi-config` crates):
//! 1. its grant scope (`Grant`), resolved once at load into what all calls
//!    share (`Shared`);
//! 2. `XCtx`: owned per-call context, started from `Shared` for each call;
//! 3. `X<'a>`: a borrowed view implementing the generated `Host` trait;
//! 4. `XData`: the `HasData` marker tying the two together, which also
//!    implements [`HostCapability`].
//!
//! A capability that is not granted is never linked (see `sandbox.rs`); a
//! granted one still refuses resources outside the grant with the
//! interface's `access-denied` error value, never a trap.

pub mod clock;
pub mod config;
pub mod files;
pub mod http;
pub mod log;
pub mod registry;
pub mod state;
pub mod tape;
pub mod wasi;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use registry::{CallView, HostCapability, NoScope, Setup, SetupMode};

/// WIT package every Vigil interface belongs to.
pub const PACKAGE: &str = "vigil:plugin";
/// Version of that package this host implements.
pub const PACKAGE_VERSION: &str = "0.1.0";

/// What the host knows about a capability besides its module
/// ([`Capability::spec`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// Short name used in `pack.toml`, `vigil.toml` and the audit log.
    pub name: &'static str,
    /// What it lets a plugin do, for help and reports.
    pub summary: &'static str,
    /// Whether `init` may call it while the host snapshots the plugin
    /// ([`HostCapability::PREINIT`]).
    pub preinit: bool,
}

macro_rules! capability_enum {
    ($($name:ident: $variant:ident => $unit:ty),* $(,)?) => {
        /// A host interface a plugin may request and an operator may grant:
        /// one variant per line of the registry.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum Capability {
            $(
                #[doc = concat!("`vigil:plugin/", stringify!($name), "`.")]
                $variant,
            )*
        }

        impl Capability {
            /// Every capability this host offers, in registry order.
            pub const ALL: &[Capability] = &[$(Capability::$variant),*];

            /// Its line of the registry.
            pub const fn spec(self) -> Spec {
                match self {
                    $(Capability::$variant => Spec {
                        name: stringify!($name),
                        summary: <$unit as HostCapability>::SUMMARY,
                        preinit: <$unit as HostCapability>::PREINIT,
                    },)*
                }
            }
        }
    };
}
registry::for_each_capability!(capability_enum);

impl Capability {
    /// Short name used in `pack.toml` and `vigil.toml`.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// Every capability's name, comma-separated, for help and error text.
    pub fn names() -> String {
        Capability::ALL
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Fully qualified interface name as it appears in a component's imports.
    pub fn interface(self) -> String {
        format!("{PACKAGE}/{}@{PACKAGE_VERSION}", self.name())
    }

    /// The capability an imported interface name refers to, if any.
    pub fn from_interface(import: &str) -> Option<Capability> {
        let rest = import.strip_prefix(PACKAGE)?.strip_prefix('/')?;
        let (name, version) = rest.split_once('@')?;
        if version != PACKAGE_VERSION {
            return None;
        }
        Capability::ALL.iter().copied().find(|c| c.name() == name)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Clamp a guest-supplied string to `max` bytes on a char boundary.
/// Guest-controlled: anything the host keeps or prints goes through this.
pub(crate) fn clamp(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_capability_has_a_distinct_name_that_round_trips_through_serde() {
        let mut names: Vec<_> = Capability::ALL.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Capability::ALL.len());
        for c in Capability::ALL {
            let json = serde_json::to_string(c).expect("serializes");
            assert_eq!(
                json,
                format!("\"{}\"", c.name()),
                "the log's name is the registry's"
            );
        }
    }

    #[test]
    fn interface_names_round_trip_and_reject_other_versions() {
        for &c in Capability::ALL {
            assert_eq!(Capability::from_interface(&c.interface()), Some(c));
        }
        assert_eq!(Capability::from_interface("vigil:plugin/state@0.2.0"), None);
        assert_eq!(Capability::from_interface("vigil:plugin/types@0.1.0"), None);
        assert_eq!(
            Capability::from_interface("wasi:http/outgoing-handler@0.2.0"),
            None
        );
    }

    #[test]
    fn clamp_cuts_on_a_char_boundary() {
        assert_eq!(clamp("ééé".into(), 3), "é…");
        assert_eq!(clamp("abc".into(), 3), "abc");
    }
}

/// What an imported interface of a component is, for load checks and
/// `vigil inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKind {
    /// A Vigil capability: linked only when granted.
    Capability(Capability),
    /// `vigil:plugin/types`: data types only, always linked.
    Types,
    /// A standard WASI interface, linked with a context that grants nothing.
    Wasi,
    /// Anything else: never linked, so the plugin cannot load.
    Unknown,
}

/// Classify an import name such as `vigil:plugin/state@0.1.0`.
pub fn classify_import(name: &str) -> ImportKind {
    if let Some(cap) = Capability::from_interface(name) {
        ImportKind::Capability(cap)
    } else if name == format!("{PACKAGE}/types@{PACKAGE_VERSION}") {
        ImportKind::Types
    } else if wasi::is_allowed_wasi(name) {
        ImportKind::Wasi
    } else {
        ImportKind::Unknown
    }
}
