//! Write Vigil detection plugins in Rust.
//!
//! A plugin is a struct and one `impl Detector`; [`export_detector!`] turns it
//! into the exports of the `vigil:plugin/detector` world:
//!
//! ```ignore
//! use vigil_sdk::{Config, Detector, Event, Finding, Findings, PluginError, Severity};
//!
//! struct Whoami;
//!
//! impl Detector for Whoami {
//!     fn init(_config: &Config) -> Result<Self, PluginError> {
//!         Ok(Whoami)
//!     }
//!
//!     fn detect(&mut self, event: &Event<'_>, findings: &mut Findings) {
//!         if let Some(cmd) = event.str("Event.EventData.CommandLine") {
//!             if cmd.contains("whoami") {
//!                 findings.push(
//!                     Finding::new("example.whoami", "whoami executed", Severity::Low)
//!                         .technique("T1033")
//!                         .evidence("CommandLine", cmd),
//!                 );
//!             }
//!         }
//!     }
//! }
//!
//! vigil_sdk::export_detector!(Whoami);
//! ```
//!
//! Capabilities are plain functions in [`log`], [`config`], [`state`],
//! [`clock`] and [`files`]. A plugin's component imports only the capabilities it calls,
//! and each one must be requested in `pack.toml` and granted by the operator.
//!
//! Plugin logic is tested natively with `cargo test` through [`testing`]
//! (not available on `wasm32`): capabilities are then served in memory.

mod capability;
mod detector;
mod finding;

/// Bindings generated from `wit/` for the `detector` world. Plugin code should
/// not need these; they are public for [`export_detector!`].
#[doc(hidden)]
pub mod bindings {
    #![allow(missing_docs, unsafe_code, clippy::all)]
    wit_bindgen::generate!({
        path: "../wit",
        world: "detector",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "vigil_sdk::bindings",
        generate_all,
    });
}

#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use capability::{clock, config, files, log, state};
pub use detector::{Config, Detector, Event, Findings, PluginError};
pub use finding::{Finding, Severity};
pub use vigil_event::Value;

/// Glue used by [`export_detector!`]; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::detector::{export_detect, export_init};
}

/// Export a [`Detector`] implementation as this component's `detector` world.
///
/// On non-`wasm32` targets this expands to nothing, so the plugin crate still
/// builds natively for its unit tests.
#[macro_export]
macro_rules! export_detector {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::bindings::vigil::plugin::types as __vigil_types;

            struct VigilDetectorExport;

            impl $crate::bindings::Guest for VigilDetectorExport {
                fn init(
                    config: __vigil_types::ConfigEntries,
                ) -> ::core::result::Result<__vigil_types::DetectorInfo, __vigil_types::PluginError>
                {
                    $crate::__private::export_init::<$plugin>(config)
                }

                fn detect(
                    batch: __vigil_types::EventBatch,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<__vigil_types::Finding>,
                    __vigil_types::PluginError,
                > {
                    $crate::__private::export_detect::<$plugin>(batch)
                }
            }

    $crate::bindings::export!(VigilDetectorExport with_types_in $crate::bindings);
        };
    };
}
