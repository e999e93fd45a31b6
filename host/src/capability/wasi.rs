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
//!
//! **No wait outlives the call's deadline.** The epoch deadline only fires
//! when control is back in guest code, so a guest blocked inside a host
//! function would hold its thread in real time: `std::thread::sleep(1 h)`
//! compiles to `monotonic-clock.subscribe-duration` plus `poll`, which
//! wasmtime-wasi's sync bindings serve with a real sleep. `wasi:io/poll` is
//! therefore linked over wasmtime-wasi's own implementation (shadowing it)
//! with a version that waits at most until the call's deadline and then
//! fails the call with [`BlockedPastDeadline`] (reported as a deadline
//! overrun). Every other blocking WASI path waits on nothing here: stdout
//! and stderr are memory pipes, stdin is closed, there are no files and no
//! sockets. Host-side waits of Vigil's own capabilities bound themselves
//! (`http`, its DNS lookup included, by the remaining deadline), and
//! `crate::run::watchdog` reports any call that runs past its deadline anyway.

use std::future::Future;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use sha2::{Digest, Sha256};

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::sync::io::poll as sync_poll;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};
use wasmtime_wasi_io::bindings::wasi::io::poll as async_poll;

/// Most bytes a call may write to stdout or stderr; a write past it traps
/// the call (wasmtime's `MemoryOutputPipe` behaviour).
pub const CAPTURE_BYTES: usize = 256 * 1024;

/// Most WASI resources (pollables, streams, ...) one call may hold at once.
pub const MAX_RESOURCES: usize = 10_000;

/// Per-call WASI context plus the captured output streams.
pub struct WasiSandbox {
    ctx: WasiCtx,
    table: ResourceTable,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    /// When the call must be over; no `wasi:io/poll` wait goes past it.
    deadline: Instant,
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
    /// Waits in `wasi:io/poll` end at `deadline`.
    pub fn new(random_seed: [u8; 32], deadline: Instant) -> Self {
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
        // Guest-controlled: every pollable, stream or descriptor handle a
        // guest opens is a host-side table entry outside its memory cap;
        // wasmtime's default allows a million of them per call.
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        WasiSandbox {
            ctx,
            table,
            stdout,
            stderr,
            deadline,
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

/// Implemented by store data that carries a [`WasiSandbox`].
pub trait WasiSandboxView: WasiView {
    /// The call's WASI sandbox.
    fn sandbox(&mut self) -> &mut WasiSandbox;
}

/// A guest waited in `wasi:io/poll` (a sleep, or a wait on a stream) until
/// its call's deadline: the call fails as a deadline overrun.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("waited in wasi:io/poll (a sleep or a blocking wait) until the call's deadline")]
pub struct BlockedPastDeadline;

/// Borrowed view implementing `wasi:io/poll` with the call's deadline.
pub struct DeadlinePoll<'a> {
    table: &'a mut ResourceTable,
    deadline: Instant,
}

/// Run `wait` on wasmtime-wasi's runtime, giving up at `deadline`. A wait
/// that is ready at once still completes after the deadline (the guest's
/// next epoch check ends the call then).
fn until_deadline<F: Future>(deadline: Instant, wait: F) -> wasmtime::Result<F::Output> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    wasmtime_wasi::runtime::in_tokio(async { tokio::time::timeout(remaining, wait).await })
        .map_err(|_elapsed| BlockedPastDeadline.into())
}

impl sync_poll::Host for DeadlinePoll<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        until_deadline(
            self.deadline,
            async_poll::Host::poll(&mut *self.table, pollables),
        )?
    }
}

impl sync_poll::HostPollable for DeadlinePoll<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        until_deadline(
            self.deadline,
            async_poll::HostPollable::ready(&mut *self.table, pollable),
        )?
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        until_deadline(
            self.deadline,
            async_poll::HostPollable::block(&mut *self.table, pollable),
        )?
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::drop(&mut *self.table, pollable)
    }
}

/// `HasData` marker for the deadline-bounded `wasi:io/poll`.
pub struct DeadlinePollData;

impl HasData for DeadlinePollData {
    type Data<'a> = DeadlinePoll<'a>;
}

/// Link every WASI p2 interface (synchronous flavour), with `wasi:io/poll`
/// bounded by the call's deadline.
pub fn add_to_linker<T: WasiSandboxView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    // Replace wasmtime-wasi's `wasi:io/poll` (same resource type, so
    // pollables from streams and clocks keep working with it).
    linker.allow_shadowing(true);
    let linked = sync_poll::add_to_linker::<T, DeadlinePollData>(linker, |t| {
        let sandbox = t.sandbox();
        DeadlinePoll {
            table: &mut sandbox.table,
            deadline: sandbox.deadline,
        }
    });
    linker.allow_shadowing(false);
    linked
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
