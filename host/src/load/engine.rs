//! The wasmtime engine Vigil runs every plugin on, its epoch ticker and the
//! compiled-component cache.
//!
//! Choices and why (wasmtime 48):
//! - **Pooling allocator**: instance slots, memories and tables are reserved
//!   once, so a fresh instance per batch costs microseconds; with
//!   copy-on-write memory images (`memory_init_cow`, on by default) a new
//!   instance maps its initial heap instead of copying it.
//! - **Epoch interruption** instead of fuel: a check per loop back-edge is
//!   cheaper than fuel accounting, and a ticker thread advancing the epoch
//!   every [`TICK`] turns a wall-clock deadline into a trap.
//! - **Cache**: compiling a component with Cranelift takes hundreds of
//!   milliseconds; the serialized artifact is reused when the same bytes are
//!   loaded by a compatible engine.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::atomic_file::{self, Durability};
use wasmtime::component::Component;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ProfilingStrategy,
};

/// How often the epoch advances; deadlines are counted in ticks of this size.
pub const TICK: Duration = Duration::from_millis(1);

/// The most linear memory any plugin may be granted; the pool reserves
/// address space for this much per memory slot.
pub const MAX_PLUGIN_MEMORY_BYTES: u64 = 1 << 30;

/// Instances that can be alive at once across all plugins of a host.
const POOL_INSTANCES: u32 = 64;

/// An engine that can run any plugin a policy may allow (memory caps up
/// to [`MAX_PLUGIN_MEMORY_BYTES`]): for replay and inspection, which run
/// under recorded limits rather than a policy.
pub fn build_engine() -> wasmtime::Result<Engine> {
    build_engine_for(MAX_PLUGIN_MEMORY_BYTES)
}

/// Build the engine used for all plugins of a policy whose largest
/// per-instance memory cap is `max_instance_memory` bytes.
///
/// The pool follows the policy: a memory slot reserves no more than that
/// cap, since no single memory may outgrow the instance it belongs to.
/// The cap itself (all memories and tables of an instance together) is
/// enforced per call by `sandbox::CallLimiter`; the pool only bounds
/// address space and counts.
pub fn build_engine_for(max_instance_memory: u64) -> wasmtime::Result<Engine> {
    let slot = max_instance_memory.clamp(64 << 10, MAX_PLUGIN_MEMORY_BYTES);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * 4)
        .total_memories(POOL_INSTANCES * 2)
        .total_tables(POOL_INSTANCES * 4)
        .max_memory_size(slot as usize)
        .max_memories_per_component(4)
        .max_tables_per_component(8)
        // Rust and C plugins ship with a few thousand table entries at most.
        .table_elements(20_000)
        // A fresh instance per batch must not pay a page fault for every
        // page it touches: keep reused slots resident and, where the kernel
        // supports PAGEMAP_SCAN (Linux 6.7+), reset only the pages the last
        // instance dirtied instead of the whole slot.
        .linear_memory_keep_resident(16 << 20)
        .table_keep_resident(1 << 20)
        .pagemap_scan(Enabled::Auto);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true);
    if let Some(strategy) = profiling_strategy() {
        config.profiler(strategy);
    }
    let engine = Engine::new(&config)?;
    start_epoch_ticker(&engine);
    Ok(engine)
}

/// Which profiler agent the environment asks for (see the README's
/// "Performance" section):
/// - `VIGIL_PERFMAP=1` writes `/tmp/perf-<pid>.map`, so `perf report` names
///   plugin functions (the plugin build profile keeps the Wasm name section
///   for this and for trap backtraces);
/// - `VIGIL_JITDUMP=1` (cargo feature `profiling`) writes `jit-<pid>.dump`
///   in the working directory; `perf record -k 1` then `perf inject --jit`
///   make `perf annotate` show plugin machine code.
fn profiling_strategy() -> Option<ProfilingStrategy> {
    if cfg!(feature = "profiling") && std::env::var_os("VIGIL_JITDUMP").is_some() {
        Some(ProfilingStrategy::JitDump)
    } else if std::env::var_os("VIGIL_PERFMAP").is_some() {
        Some(ProfilingStrategy::PerfMap)
    } else {
        None
    }
}

/// Advance `engine`'s epoch every [`TICK`] until the engine is dropped.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("vigil-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .expect("spawning the epoch ticker thread");
}

/// Number of epoch ticks that cover `deadline` (at least one).
pub fn deadline_ticks(deadline: Duration) -> u64 {
    (deadline.as_micros() / TICK.as_micros()).max(1) as u64 + 1
}

/// Hex SHA-256 of a byte string; identifies components in caches and reports.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Compiled components on disk, keyed by the component's SHA-256 and the
/// engine's compatibility hash.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
}

impl ComponentCache {
    /// A cache in `dir` (created on first store).
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        ComponentCache {
            dir: Some(dir.into()),
        }
    }

    /// No caching: every load compiles.
    pub fn disabled() -> Self {
        ComponentCache { dir: None }
    }

    /// Compile `bytes`, or load the artifact a previous run stored.
    ///
    /// A cache entry that is missing, corrupt or from another engine build is
    /// ignored and rewritten; the cache can never make a load fail.
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
        let Some(dir) = &self.dir else {
            return Component::new(engine, bytes);
        };
        let key = cache_key(engine, bytes);
        let artifact = dir.join(format!("{key}.cwasm"));
        let checksum = dir.join(format!("{key}.sha256"));
        if let Some(component) = load_artifact(engine, &artifact, &checksum) {
            return Ok(component);
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = store_artifact(dir, &component, &artifact, &checksum) {
            tracing::warn!(dir = %dir.display(), error = %e, "could not write the compiled-component cache");
        }
        Ok(component)
    }
}

fn cache_key(engine: &Engine, bytes: &[u8]) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{}-{:016x}", &sha256_hex(bytes)[..32], hasher.finish())
}

fn load_artifact(engine: &Engine, artifact: &Path, checksum: &Path) -> Option<Component> {
    let bytes = std::fs::read(artifact).ok()?;
    let expected = std::fs::read_to_string(checksum).ok()?;
    if sha256_hex(&bytes) != expected.trim() {
        tracing::warn!(path = %artifact.display(), "ignoring a corrupt compiled-component cache entry");
        return None;
    }
    // SAFETY: `Component::deserialize` runs the native code in `bytes`
    // unchecked. The bytes come from the operator's own cache directory, were
    // produced by `Component::serialize` of this engine configuration (the
    // key includes the compatibility hash), and match the checksum written
    // next to them, so they are an artifact this host compiled itself.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize(engine, &bytes) };
    component.ok()
}

fn store_artifact(
    dir: &Path,
    component: &Component,
    artifact: &Path,
    checksum: &Path,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    // A concurrent reader never sees half an artifact; the checksum goes
    // first, so an artifact never stands without the checksum it matches.
    atomic_file::write(checksum, sha256_hex(&bytes).as_bytes(), Durability::Atomic)?;
    atomic_file::write(artifact, &bytes, Durability::Atomic)
}
