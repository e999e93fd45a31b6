//! Builds the test-only plugins (`tests/plugins/*`: `hostile`,
//! `bench-probe`, `file-reader`) through `vigil-guest-build` and writes
//! their paths to `$OUT_DIR/components.rs`.

use std::path::PathBuf;

fn main() {
    let workspace = vigil_guest_build::workspace_root(2);
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let built = match vigil_guest_build::build(&workspace, &["tests/plugins"]) {
        Ok(built) => built.unwrap_or_default(),
        Err(why) => {
            println!("cargo::error={why}");
            return;
        }
    };
    std::fs::write(
        out.join("components.rs"),
        vigil_guest_build::components_const(&built),
    )
    .expect("writing components.rs");
}
