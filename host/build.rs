//! Builds the shipped guest plugins (`plugins/*`) for `wasm32-wasip2`
//! through `vigil-guest-build` and assembles the bundled starter pack.
//! Test-only plugins (`tests/plugins/*`) are built by the test artifacts
//! crate (`tests/artifacts`), not here: the shipped library carries neither
//! them nor their paths.
//!
//! Outputs (in `$OUT_DIR/artifacts.rs`):
//! - `COMPONENTS`: `(crate name, absolute .wasm path)` of every plugin in
//!   `plugins/*`, for this crate's tests and benchmarks;
//! - `STARTER_PACK_DIR`: the assembled starter pack directory
//!   (`<target>/starter-pack`: `plugins/starter-pack/*` plus components);
//! - `STARTER_PACK_FILES`: the same files embedded with `include_bytes!`.
//!
//! With `VIGIL_SKIP_GUEST_BUILD=1` nothing is built and the starter pack is
//! empty (the CLI then says so and asks for `--pack`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

use vigil_guest_build::Built;

fn main() {
    let workspace = vigil_guest_build::workspace_root(1);
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // Problems a user can fix end the build with one `cargo::error` line
    // (cargo prints it as an error), not a panic with a backtrace.
    let components = match vigil_guest_build::build(&workspace, &["plugins"]) {
        Ok(built) => built,
        Err(why) => {
            println!("cargo::error={why}");
            return;
        }
    };
    let starter_src = workspace.join("plugins/starter-pack");
    let starter_dir = vigil_guest_build::target_root(&workspace).join("starter-pack");
    let starter_files = match &components {
        Some(built) => assemble_starter_pack(&starter_src, &starter_dir, built),
        None => Vec::new(),
    };

    let mut code = vigil_guest_build::components_const(components.as_deref().unwrap_or_default());
    writeln!(code, "/// The assembled starter pack directory.").unwrap();
    writeln!(
        code,
        "pub const STARTER_PACK_DIR: &str = {:?};",
        starter_dir.display().to_string()
    )
    .unwrap();
    writeln!(code, "/// The starter pack's files, embedded.").unwrap();
    writeln!(code, "pub const STARTER_PACK_FILES: &[(&str, &[u8])] = &[").unwrap();
    for rel in &starter_files {
        let abs = starter_dir.join(rel);
        writeln!(
            code,
            "    ({rel:?}, include_bytes!({:?})),",
            abs.display().to_string()
        )
        .unwrap();
    }
    writeln!(code, "];").unwrap();
    fs::write(out_dir.join("artifacts.rs"), code).expect("writing artifacts.rs");
    println!("cargo:rerun-if-changed={}", starter_src.display());
}

/// Copy `src` (recursively) and the components its `pack.toml` names into
/// `dest`; returns the relative paths of all files, sorted. A component the
/// manifest does not list is not shipped.
fn assemble_starter_pack(src: &Path, dest: &Path, components: &[Built]) -> Vec<String> {
    let _ = fs::remove_dir_all(dest);
    let mut files = Vec::new();
    copy_tree(src, dest, Path::new(""), &mut files);
    let manifest =
        fs::read_to_string(src.join("pack.toml")).expect("reading the starter pack.toml");
    let listed: Vec<&str> = (manifest.lines())
        .filter_map(|l| l.trim().strip_prefix("component = "))
        .map(|v| v.trim().trim_matches('"'))
        .collect();
    for c in components
        .iter()
        .filter(|c| listed.contains(&c.file.as_str()))
    {
        fs::copy(&c.path, dest.join(&c.file)).expect("copying a component into the starter pack");
        files.push(c.file.clone());
    }
    files.sort();
    files
}

fn copy_tree(src: &Path, dest: &Path, rel: &Path, files: &mut Vec<String>) {
    fs::create_dir_all(dest.join(rel)).expect("creating the starter pack directory");
    let mut entries: Vec<_> = fs::read_dir(src.join(rel))
        .expect("reading plugins/starter-pack")
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let rel_child = rel.join(&name);
        let name = name.to_string_lossy();
        // Generator scripts and caches are not part of the pack.
        if name.ends_with(".py") || name == "__pycache__" || name.starts_with('.') {
            continue;
        }
        if entry.path().is_dir() {
            copy_tree(src, dest, &rel_child, files);
        } else {
            fs::copy(entry.path(), dest.join(&rel_child)).expect("copying a starter pack file");
            files.push(rel_child.to_string_lossy().replace('\\', "/"));
        }
    }
}
