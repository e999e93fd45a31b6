//! Components built from this workspace and the bundled starter pack,
//! produced by `host/build.rs`.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

use crate::pack::PackSource;
use crate::policy::Policy;

/// Path of the component built from the workspace crate `name`
/// (e.g. `"brute-force"`, `"hostile"`), for tests and benchmarks.
pub fn component_path(name: &str) -> Option<&'static str> {
    COMPONENTS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

/// The bundled starter pack, embedded in the binary.
pub fn starter_pack() -> PackSource {
    PackSource::Embedded {
        label: "<embedded starter pack>",
        files: STARTER_PACK_FILES,
    }
}

/// Embedded file of the starter pack.
fn starter_file(rel: &str) -> &'static [u8] {
    STARTER_PACK_FILES
        .iter()
        .find(|(n, _)| *n == rel)
        .map(|(_, b)| *b)
        .unwrap_or_else(|| {
            panic!("the starter pack has no {rel}: host/build.rs embeds plugins/starter-pack")
        })
}

/// The sample events bundled with the starter pack.
pub fn starter_events() -> &'static [u8] {
    starter_file("events.jsonl")
}

/// Name of the operator policy that ships with the starter pack.
pub const STARTER_POLICY_FILE: &str = "starter-policy.toml";

/// The operator policy used with the embedded starter pack when no
/// `--policy` is given and no `vigil.toml` exists.
pub fn starter_policy() -> Policy {
    let text = String::from_utf8_lossy(starter_file(STARTER_POLICY_FILE));
    Policy::parse(
        &format!("<embedded starter pack>/{STARTER_POLICY_FILE}"),
        &text,
    )
    .expect("the bundled starter policy is valid (tested)")
}
