//! The test-only guest plugins, built by this crate's build script:
//! `hostile` (misbehaves on purpose, by config `mode`), `bench-probe`
//! (benchmark detectors) and `file-reader` (the `files` capability).
//! Tests and benchmarks depend on this crate; the shipped `vigil` crate
//! does not.

include!(concat!(env!("OUT_DIR"), "/components.rs"));

/// Path of the test plugin built from the crate `name`, e.g. `"hostile"`.
pub fn component_path(name: &str) -> Option<&'static str> {
    COMPONENTS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}
