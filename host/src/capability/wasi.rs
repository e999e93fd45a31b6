//! The standard WASI imports, linked with a context that grants nothing.
//!
//! Rust, Python and JavaScript toolchains emit imports of `wasi:cli`,
//! `wasi:io`, `wasi:clocks`, `wasi:random`, `wasi:filesystem` and
//! `wasi:sockets` whether or not the plugin uses them, so they must be
//! linked for the component to instantiate. The context behind them has no
//! preopened directories, no environment, no arguments, no network (TCP,
//! UDP and name lookup disabled), closed stdin, and frozen clocks (time goes
//! through the recorded `clock` capability instead). Stdout and stderr are
//! captured in memory and handed to the plugin's log after each call.

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use sha2::{Digest, Sha256};

use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

/// Most bytes a call may write to stdout or stderr; a write past it traps
/// the call (wasmtime's `MemoryOutputPipe` behaviour).
pub const CAPTURE_BYTES: usize = 256 * 1024;

/// Per-call WASI context plus the captured output streams.
pub struct WasiSandbox {
    ctx: WasiCtx,
    table: ResourceTable,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl std::fmt::Debug for WasiSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasiSandbox").finish_non_exhaustive()
    }
}

/// A clock stuck at the Unix epoch.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl WasiSandbox {
    /// A fresh context that grants nothing. `random_seed` seeds both
    /// `wasi:random` generators: the host picks a fresh seed per call and
    /// records it, so the bytes a plugin drew can be drawn again on replay.
    pub fn new(random_seed: [u8; 32]) -> Self {
        let stdout = MemoryOutputPipe::new(CAPTURE_BYTES);
        let stderr = MemoryOutputPipe::new(CAPTURE_BYTES);
        let ctx = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .secure_random(StdRng::from_seed(random_seed))
            .insecure_random(StdRng::from_seed(derive_seed(random_seed, 1)))
            .insecure_random_seed(u128::from_le_bytes(
                derive_seed(random_seed, 2)[..16]
                    .try_into()
                    .expect("16 bytes"),
            ))
            .build();
        WasiSandbox {
            ctx,
            table: ResourceTable::new(),
            stdout,
            stderr,
        }
    }

    /// What the guest wrote to stdout and stderr so far.
    pub fn captured(&self) -> (Vec<u8>, Vec<u8>) {
        (
            self.stdout.contents().to_vec(),
            self.stderr.contents().to_vec(),
        )
    }

    /// The view wasmtime-wasi's host implementations need.
    pub fn view(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// A seed for one call's random generators, from the OS-seeded thread RNG.
pub fn fresh_seed() -> [u8; 32] {
    rand::random()
}

/// An independent seed derived from `seed` (the three WASI generators must
/// not share a stream).
fn derive_seed(seed: [u8; 32], n: u8) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(seed);
    hasher.update([n]);
    hasher.finalize().into()
}

/// Link every WASI p2 interface (synchronous flavour).
pub fn add_to_linker<T: WasiView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)
}

/// WASI packages a component may import; they are linked deny-all.
pub const ALLOWED_PACKAGES: [&str; 6] = [
    "wasi:cli",
    "wasi:io",
    "wasi:clocks",
    "wasi:random",
    "wasi:filesystem",
    "wasi:sockets",
];

/// Whether `import` (e.g. `wasi:io/streams@0.2.6`) is a standard WASI
/// interface linked deny-all.
pub fn is_allowed_wasi(import: &str) -> bool {
    import
        .split_once('/')
        .is_some_and(|(package, _)| ALLOWED_PACKAGES.contains(&package))
}
