//! Builds guest plugins for `wasm32-wasip2` from a build script, the way
//! wasmtime builds its test programs (`crates/test-programs/artifacts`): a
//! nested `cargo build` with its own target directory, `rerun-if-changed`
//! lines taken from the nested build's dep-info.
//!
//! Two build scripts use it: the shipped `vigil` crate's (the plugins under
//! `plugins/`, which make the bundled starter pack) and the test artifacts
//! crate's (the test-only plugins under `tests/plugins/`), so the shipped
//! library never carries test plugins or their paths.
//!
//! `VIGIL_SKIP_GUEST_BUILD=1` skips the nested build: no components, for
//! host-only work (`cargo check`, docs) on a machine without the guest
//! target. What needs a component then says so when it is used.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

/// The guest target.
pub const TARGET: &str = "wasm32-wasip2";
/// The cargo profile guests are built with (root `Cargo.toml`).
pub const PROFILE: &str = "plugin";
/// Set to `1` to skip building guest plugins.
pub const SKIP_ENV: &str = "VIGIL_SKIP_GUEST_BUILD";

/// One built plugin.
#[derive(Debug, Clone)]
pub struct Built {
    /// Package name, e.g. `brute-force`.
    pub name: String,
    /// Its `.wasm` file name, e.g. `brute_force.wasm`.
    pub file: String,
    /// Absolute path of the built component.
    pub path: PathBuf,
}

/// The workspace root, from a build script of a crate `depth` levels below it.
pub fn workspace_root(depth: usize) -> PathBuf {
    let mut dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    for _ in 0..depth {
        dir.pop();
    }
    dir
}

/// The outer build's target directory.
pub fn target_root(workspace: &Path) -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace.join("target"), PathBuf::from)
}

/// Build every crate under `workspace/<parent>` for each of `parents`.
/// Returns `Ok(None)` when [`SKIP_ENV`] is set; `Err` is a message for a
/// `cargo::error` line (the target is missing, the build failed).
pub fn build(workspace: &Path, parents: &[&str]) -> Result<Option<Vec<Built>>, String> {
    println!("cargo:rerun-if-env-changed={SKIP_ENV}");
    if env::var_os(SKIP_ENV).is_some_and(|v| v == "1") {
        println!("cargo:warning={SKIP_ENV}=1: guest plugins are not built");
        return Ok(None);
    }
    let plugins = discover(workspace, parents)?;
    let plugin_target = target_root(workspace).join("plugins");
    check_target_installed()?;
    nested_build(workspace, &plugin_target, &plugins)?;
    let wasm_dir = plugin_target.join(TARGET).join(PROFILE);
    let mut built = Vec::new();
    for (name, _) in &plugins {
        let stem = name.replace('-', "_");
        let path = wasm_dir.join(format!("{stem}.wasm"));
        if !path.exists() {
            return Err(format!(
                "the nested build did not produce {}",
                path.display()
            ));
        }
        emit_rerun_from_dep_info(&wasm_dir.join(format!("{stem}.d")));
        built.push(Built {
            name: name.clone(),
            file: format!("{stem}.wasm"),
            path,
        });
    }
    println!("cargo:rerun-if-changed={}", workspace.join("wit").display());
    // The root manifest holds the `plugin` build profile (LTO, names kept).
    for file in ["Cargo.lock", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", workspace.join(file).display());
    }
    Ok(Some(built))
}

/// Rust source declaring `pub const COMPONENTS: &[(&str, &str)]`:
/// `(package name, absolute .wasm path)` of each of `built`.
pub fn components_const(built: &[Built]) -> String {
    let mut code =
        String::from("/// `(package name, .wasm path)` of every plugin built for this crate.\n");
    code.push_str("pub const COMPONENTS: &[(&str, &str)] = &[\n");
    for b in built {
        code.push_str(&format!(
            "    ({:?}, {:?}),\n",
            b.name,
            b.path.display().to_string()
        ));
    }
    code.push_str("];\n");
    code
}

/// `(package name, crate dir)` of every workspace crate directly under
/// one of `parents` (e.g. `plugins/brute-force` for `plugins`).
fn discover(workspace: &Path, parents: &[&str]) -> Result<Vec<(String, PathBuf)>, String> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .manifest_path(workspace.join("Cargo.toml"))
        .no_deps()
        .exec()
        .map_err(|e| format!("`cargo metadata` on the workspace failed: {e}"))?;
    let mut found = Vec::new();
    for package in metadata.workspace_packages() {
        let Some(dir) = package.manifest_path.parent() else {
            continue;
        };
        let dir = dir.as_std_path();
        let under = |parent: &&str| dir.parent() == Some(&*workspace.join(parent));
        if parents.iter().any(under) {
            println!("cargo:rerun-if-changed={}", package.manifest_path);
            found.push((package.name.to_string(), dir.to_owned()));
        }
    }
    for parent in parents {
        // A crate added or removed under `parent` changes this directory.
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(parent).display()
        );
    }
    found.sort();
    Ok(found)
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
             automatically, e.g. RUSTUP_AUTO_INSTALL=0), or `rustup target add {TARGET}`; \
             or set {SKIP_ENV}=1 to build the host without plugins"
        ))
    }
}

fn nested_build(
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
