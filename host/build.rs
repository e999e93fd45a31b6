//! Builds every guest plugin of the workspace for `wasm32-wasip2` and
//! assembles the bundled starter pack, the way wasmtime builds its test
//! programs (`crates/test-programs/artifacts/build.rs`): a nested
//! `cargo build` with its own target directory, `rerun-if-changed` lines
//! taken from the nested build's dep-info, and generated path constants.
//!
//! Outputs (in `$OUT_DIR/artifacts.rs`):
//! - `COMPONENTS`: `(crate name, absolute .wasm path)` for every plugin in
//!   `plugins/*` and `tests/plugins/*`;
//! - `STARTER_PACK_DIR`: the assembled starter pack directory
//!   (`<target>/starter-pack`: `plugins/starter-pack/*` plus components);
//! - `STARTER_PACK_FILES`: the same files embedded with `include_bytes!`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "plugin";

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("host/ sits in the workspace root")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target_root =
        env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace.join("target"), PathBuf::from);
    let plugin_target = target_root.join("plugins");

    let plugins = discover_plugins(&workspace);
    // Problems a user can fix end the build with one `cargo::error` line
    // (cargo prints it as an error), not a panic with a backtrace.
    if let Err(why) =
        check_target_installed().and_then(|()| build_plugins(&workspace, &plugin_target, &plugins))
    {
        println!("cargo::error={why}");
        return;
    }

    let wasm_dir = plugin_target.join(TARGET).join(PROFILE);
    let mut components = Vec::new();
    for (name, _) in &plugins {
        let file = format!("{}.wasm", name.replace('-', "_"));
        let path = wasm_dir.join(&file);
        assert!(
            path.exists(),
            "nested build did not produce {}",
            path.display()
        );
        emit_rerun_from_dep_info(&wasm_dir.join(format!("{}.d", name.replace('-', "_"))));
        components.push((name.clone(), file, path));
    }

    let starter_src = workspace.join("plugins/starter-pack");
    let starter_dir = target_root.join("starter-pack");
    let starter_files = assemble_starter_pack(&starter_src, &starter_dir, &components);

    let mut code = String::new();
    writeln!(
        code,
        "/// `(crate name, .wasm path)` of every plugin built from this workspace."
    )
    .unwrap();
    writeln!(code, "pub const COMPONENTS: &[(&str, &str)] = &[").unwrap();
    for (name, _, path) in &components {
        writeln!(code, "    ({name:?}, {:?}),", path.display().to_string()).unwrap();
    }
    writeln!(code, "];").unwrap();
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
    println!("cargo:rerun-if-changed={}", workspace.join("wit").display());
    // The root manifest holds the `plugin` build profile (LTO, names kept).
    for file in ["Cargo.lock", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", workspace.join(file).display());
    }
}

/// `(package name, crate dir)` of every crate under `plugins/` and `tests/plugins/`.
fn discover_plugins(workspace: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    for parent in ["plugins", "tests/plugins"] {
        let dir = workspace.join(parent);
        println!("cargo:rerun-if-changed={}", dir.display());
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let manifest = entry.path().join("Cargo.toml");
            let Ok(text) = fs::read_to_string(&manifest) else {
                continue;
            };
            let name = text
                .lines()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix("name = ")
                        .map(|v| v.trim_matches('"').to_owned())
                })
                .unwrap_or_else(|| panic!("{}: no `name = \"...\"` line", manifest.display()));
            println!("cargo:rerun-if-changed={}", manifest.display());
            found.push((name, entry.path()));
        }
    }
    found.sort();
    found
}

fn check_target_installed() -> Result<(), String> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let installed =
        sysroot.is_some_and(|s| Path::new(&s).join("lib/rustlib").join(TARGET).exists());
    if installed {
        Ok(())
    } else {
        Err(format!(
            "the `{TARGET}` Rust target is not installed, so the plugins cannot be built. \
             Fix: run `rustup toolchain install` in the repository root (rust-toolchain.toml \
             pins the toolchain and the target; needed where rustup does not install \
             automatically, e.g. RUSTUP_AUTO_INSTALL=0), or `rustup target add {TARGET}`"
        ))
    }
}

fn build_plugins(
    workspace: &Path,
    plugin_target: &Path,
    plugins: &[(String, PathBuf)],
) -> Result<(), String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--target",
            TARGET,
            "--profile",
            PROFILE,
            "--target-dir",
        ])
        .arg(plugin_target);
    for (name, _) in plugins {
        cmd.args(["-p", name]);
    }
    // The outer build's settings (clippy's wrapper, RUSTFLAGS for the host,
    // cargo's per-package variables) must not leak into the guest build; the
    // jobserver (CARGO_MAKEFLAGS) is kept so both builds share the cores.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let keep = key == "CARGO_HOME" || key == "CARGO_MAKEFLAGS" || key == "CARGO_NET_OFFLINE";
        let drop = (key.starts_with("CARGO_") && !keep)
            || key.starts_with("RUSTC")
            || key == "RUSTFLAGS"
            || key == "RUSTDOCFLAGS"
            || key == "CLIPPY_ARGS"
            || key == "CLIPPY_CONF_DIR"
            || key.starts_with("__CARGO");
        if drop {
            cmd.env_remove(&key);
        }
    }
    // Wasm SIMD (supported by wasmtime's default config): `memchr` and
    // friends search text 16 bytes per step instead of 4.
    cmd.env(
        "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS",
        "-C target-feature=+simd128",
    );
    let status = cmd
        .status()
        .map_err(|e| format!("could not run the nested cargo build of the plugins: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "building the plugins for {TARGET} failed (the compiler's errors are above)"
        ))
    }
}

fn emit_rerun_from_dep_info(dep_file: &Path) {
    let Ok(text) = fs::read_to_string(dep_file) else {
        return;
    };
    // Make-style: `target: dep dep \`; paths escape spaces with `\ `.
    let Some((_, deps)) = text.split_once(": ") else {
        return;
    };
    let deps = deps.replace("\\\n", " ").replace("\\ ", "\u{0}");
    for dep in deps.split_whitespace() {
        println!("cargo:rerun-if-changed={}", dep.replace('\u{0}', " "));
    }
}

/// Copy `src` (recursively) and the components its `pack.toml` names into
/// `dest`; returns the relative paths of all files, sorted. A component the
/// manifest does not list is not shipped.
fn assemble_starter_pack(
    src: &Path,
    dest: &Path,
    components: &[(String, String, PathBuf)],
) -> Vec<String> {
    let _ = fs::remove_dir_all(dest);
    let mut files = Vec::new();
    copy_tree(src, dest, Path::new(""), &mut files);
    let manifest =
        fs::read_to_string(src.join("pack.toml")).expect("reading the starter pack.toml");
    let listed: Vec<&str> = (manifest.lines())
        .filter_map(|l| l.trim().strip_prefix("component = "))
        .map(|v| v.trim().trim_matches('"'))
        .collect();
    for (_, file, path) in components.iter().filter(|c| listed.contains(&c.1.as_str())) {
        fs::copy(path, dest.join(file)).expect("copying a component into the starter pack");
        files.push(file.clone());
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
