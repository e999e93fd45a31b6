//! Capabilities: the host interfaces a plugin may import.
//!
//! Every capability module has the same four parts (the shape of wasmtime's
//! `wasi-keyvalue` and `wasi-config` crates):
//! 1. `XCtx`: owned per-store context, built from the plugin's grant for
//!    each call;
//! 2. `X<'a>`: a borrowed view implementing the generated `Host` trait;
//! 3. `XData`: the `HasData` marker tying the two together;
//! 4. `add_to_linker`: links the interface for stores whose data implements
//!    the module's `XView` trait.
//!
//! A capability that is not granted is never linked (see `sandbox.rs`); a
//! granted one still refuses resources outside the grant with the
//! interface's `access-denied` error value, never a trap.

pub mod clock;
pub mod config;
pub mod files;
pub mod http;
pub mod log;
pub mod state;
pub mod wasi;

use std::fmt;

use serde::{Deserialize, Serialize};

/// WIT package every Vigil interface belongs to.
pub const PACKAGE: &str = "vigil:plugin";
/// Version of that package this host implements.
pub const PACKAGE_VERSION: &str = "0.1.0";

/// One line of the capability registry ([`Capability::spec`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// Short name used in `pack.toml`, `vigil.toml` and the audit log.
    pub name: &'static str,
    /// What it lets a plugin do, for help and reports.
    pub summary: &'static str,
    /// Whether `init` may call it while the host snapshots the plugin at
    /// load (`preinit.rs`): only read-only interfaces whose answers are
    /// fixed for a pack generation, so the snapshot holds nothing a fresh
    /// instance would see differently.
    pub preinit: bool,
}

/// A host interface a plugin may request and an operator may grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// `vigil:plugin/log`: structured logging.
    Log,
    /// `vigil:plugin/config`: read the plugin's own config.
    Config,
    /// `vigil:plugin/state`: persistent per-plugin key-value store.
    State,
    /// `vigil:plugin/clock`: wall and monotonic time.
    Clock,
    /// `vigil:plugin/http`: outbound HTTP to granted origins.
    Http,
    /// `vigil:plugin/files`: read-only files below granted directories of the pack.
    Files,
}

impl Capability {
    /// Every capability this host offers.
    pub const ALL: [Capability; 6] = [
        Capability::Log,
        Capability::Config,
        Capability::State,
        Capability::Clock,
        Capability::Http,
        Capability::Files,
    ];

    /// The registry: what the host knows about each capability besides its
    /// module. Adding a capability is its WIT file, its module (grant type,
    /// per-call context, `add_to_linker`), a variant with its line here, and
    /// the SDK functions; the compiler then points at the `match`es that
    /// link it (`sandbox::link`) and resolve its grant (`pack.rs`).
    pub const fn spec(self) -> Spec {
        let (name, summary, preinit) = match self {
            Capability::Log => ("log", "structured logging into the host's log", false),
            Capability::Config => ("config", "read the plugin's own config", true),
            Capability::State => ("state", "persistent per-plugin key-value store", false),
            Capability::Clock => ("clock", "wall and monotonic time", false),
            Capability::Http => ("http", "outbound HTTP to granted origins", false),
            Capability::Files => ("files", "read files below granted pack directories", true),
        };
        Spec {
            name,
            summary,
            preinit,
        }
    }

    /// Short name used in `pack.toml` and `vigil.toml`.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// Every capability's name, comma-separated, for help and error text.
    pub fn names() -> String {
        Capability::ALL.map(Capability::name).join(", ")
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
        Capability::ALL.into_iter().find(|c| c.name() == name)
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
    fn all_lists_every_capability_once_with_a_distinct_name() {
        // Exhaustive: a new variant fails to compile here until it is
        // placed, and then must be in `ALL`.
        let index = |c: Capability| match c {
            Capability::Log => 0,
            Capability::Config => 1,
            Capability::State => 2,
            Capability::Clock => 3,
            Capability::Http => 4,
            Capability::Files => 5,
        };
        for (i, c) in Capability::ALL.into_iter().enumerate() {
            assert_eq!(index(c), i);
        }
        let mut names: Vec<_> = Capability::ALL.map(Capability::name).to_vec();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Capability::ALL.len());
    }

    #[test]
    fn interface_names_round_trip_and_reject_other_versions() {
        for c in Capability::ALL {
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
