//! The shipped plugins (`plugins/*`) and the bundled starter pack, produced
//! by `host/build.rs`. Test-only plugins live in the `vigil-test-artifacts`
//! crate.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

use crate::load::pack::PackSource;
use crate::load::policy::Policy;

/// Path of the component built from the shipped plugin crate `name`
/// (e.g. `"brute-force"`), for tests and benchmarks.
pub fn component_path(name: &str) -> Option<&'static str> {
    COMPONENTS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

/// The bundled starter pack, embedded in the binary; an error saying what
/// to do when this binary was built without plugins.
pub fn starter_pack() -> Result<PackSource, &'static str> {
    if STARTER_PACK_FILES.is_empty() {
        return Err(NO_STARTER_PACK);
    }
    Ok(PackSource::Embedded {
        label: "<embedded starter pack>",
        files: STARTER_PACK_FILES,
    })
}

const NO_STARTER_PACK: &str = "this vigil was built with VIGIL_SKIP_GUEST_BUILD=1 and has no \
     starter pack; pass --pack DIR (and an events file), or build without the switch";

/// Embedded file of the starter pack.
fn starter_file(rel: &str) -> &'static [u8] {
    STARTER_PACK_FILES
        .iter()
        .find(|(n, _)| *n == rel)
        .map(|(_, b)| *b)
        .unwrap_or_else(|| {
            if STARTER_PACK_FILES.is_empty() {
                panic!("{NO_STARTER_PACK}")
            }
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
