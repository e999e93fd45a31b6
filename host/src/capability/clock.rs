//! `vigil:plugin/clock`: wall and monotonic time supplied by the host.
//!
//! Plugins get time only through this capability (the standard
//! `wasi:clocks` imports are frozen, see `wasi.rs`), so every reading a
//! decision depends on passes through the host where it can be recorded.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use wasmtime::component::{HasData, Linker};

use super::{CallView, Capability, HostCapability, NoScope, Setup};
use crate::bindings::vigil::plugin::clock as wit;
use crate::capability::tape::Tape;

/// Per-call clock context.
#[derive(Debug, Clone)]
pub struct ClockCtx {
    /// Origin of monotonic readings: when the host started.
    origin: Instant,
}

impl ClockCtx {
    /// A clock whose monotonic readings count from `origin`.
    pub fn new(origin: Instant) -> Self {
        ClockCtx { origin }
    }
}

/// Borrowed view implementing the generated `Host` trait.
pub struct Clock<'a> {
    ctx: &'a mut ClockCtx,
    tape: &'a mut Tape,
}

crate::access_denied_only_error!(wit::Error);

impl wit::Host for Clock<'_> {
    fn wall_now(&mut self) -> Result<u64, wit::Error> {
        // Recorded: a reading is what makes a run non-deterministic.
        self.tape
            .call(Capability::Clock, "wall-now", json!({}), || {
                let since_epoch = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                Ok(u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX))
            })
    }

    fn monotonic_now(&mut self) -> Result<u64, wit::Error> {
        let origin = self.ctx.origin;
        self.tape
            .call(Capability::Clock, "monotonic-now", json!({}), || {
                Ok(u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
            })
    }
}

/// `HasData` marker for the clock capability.
pub struct ClockData;

impl HasData for ClockData {
    type Data<'a> = Clock<'a>;
}

impl HostCapability for ClockData {
    const SUMMARY: &'static str = "wall and monotonic time";
    const PREINIT: bool = false;
    type Grant = NoScope;
    /// Origin of monotonic readings.
    type Shared = Instant;
    type Ctx = ClockCtx;

    fn resolve(_: NoScope, setup: &Setup<'_>) -> Result<Instant, String> {
        Ok(setup.clock_origin)
    }

    fn start_call(origin: &Arc<Instant>, _deadline: Instant) -> ClockCtx {
        ClockCtx::new(**origin)
    }

    fn add_to_linker<T: CallView<Self> + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, ClockData>(linker, |t| {
            let (ctx, tape) = t.parts();
            Clock { ctx, tape }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::vigil::plugin::clock::Host;

    #[test]
    fn monotonic_readings_never_go_backwards_and_wall_time_is_recent() {
        let mut ctx = ClockCtx::new(Instant::now());
        let mut tape = Tape::default();
        let mut clock = Clock {
            ctx: &mut ctx,
            tape: &mut tape,
        };
        let a = clock.monotonic_now().expect("granted");
        let b = clock.monotonic_now().expect("granted");
        assert!(b >= a);
        // 2020-01-01 in nanoseconds: any sane host clock is past it.
        assert!(clock.wall_now().expect("granted") > 1_577_836_800_000_000_000);
        assert_eq!(tape.into_calls().0.len(), 3, "every reading is recorded");
    }
}
