//! The watchdog: proof that no plugin call outlives its deadline.
//!
//! Deadlines are enforced where the guest runs (epoch interruption) and
//! where the host waits on its behalf (`wasi:io/poll`, the `http` client,
//! each bounding itself by the call's deadline). The watchdog checks that
//! this holds for every call, whatever the cause: each call registers its
//! deadline for as long as it runs; a call that finishes later than its
//! deadline plus [`GRACE`] counts as an *overrun*, and a call still running
//! past that point is reported while it hangs (a background thread looks
//! every [`SCAN`]). An overrun is a host bug — some host-side wait does not
//! honour deadlines — so it is logged as an error naming the plugin, and
//! counted ([`overruns`]) for tests and metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// How far past its deadline a call may finish before it is an overrun:
/// the epoch tick, thread scheduling on a loaded machine and tearing the
/// instance down. The hangs this catches last seconds to hours.
pub const GRACE: Duration = Duration::from_millis(500);

/// How often the background thread looks for hanging calls.
pub const SCAN: Duration = Duration::from_millis(100);

struct InFlight {
    label: String,
    deadline: Instant,
    reported: bool,
}

static CALLS: Mutex<BTreeMap<u64, InFlight>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);
static OVERRUNS: AtomicU64 = AtomicU64::new(0);
static SCANNER: Once = Once::new();

fn calls() -> std::sync::MutexGuard<'static, BTreeMap<u64, InFlight>> {
    // Entries are inserted and removed whole; a poisoned map is consistent.
    CALLS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Calls that ran (or are still running) past their deadline plus
/// [`GRACE`] since the process started. Zero unless the host has a bug.
pub fn overruns() -> u64 {
    OVERRUNS.load(Ordering::Relaxed)
}

/// A call being watched; dropping it ends the watch.
#[derive(Debug)]
pub struct Watch {
    id: u64,
    deadline: Instant,
}

/// Watch a call of `label` (`pack/plugin`) that must be over by `deadline`.
pub fn watch(label: impl FnOnce() -> String, deadline: Instant) -> Watch {
    SCANNER.call_once(|| {
        std::thread::Builder::new()
            .name("vigil-watchdog".into())
            .spawn(scan_forever)
            .expect("spawning the watchdog thread");
    });
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    calls().insert(
        id,
        InFlight {
            label: label(),
            deadline,
            reported: false,
        },
    );
    Watch { id, deadline }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let entry = calls().remove(&self.id);
        let late = Instant::now().saturating_duration_since(self.deadline);
        // A call the scanner already reported was counted there.
        if let Some(call) = entry
            && late > GRACE
            && !call.reported
        {
            OVERRUNS.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                "watchdog: a call of plugin {} finished {late:?} after its deadline; some \
                 host-side wait does not honour deadlines (a bug: please report it)",
                call.label
            );
        }
    }
}

fn scan_forever() {
    loop {
        std::thread::sleep(SCAN);
        let now = Instant::now();
        for call in calls().values_mut() {
            let late = now.saturating_duration_since(call.deadline);
            if late > GRACE && !call.reported {
                call.reported = true;
                OVERRUNS.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    "watchdog: a call of plugin {} is still running {late:?} after its \
                     deadline; some host-side wait does not honour deadlines (a bug: please \
                     report it)",
                    call.label
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_finishing_past_its_deadline_and_grace_counts_as_an_overrun() {
        let before = overruns();
        drop(watch(
            || "t/ok".into(),
            Instant::now() + Duration::from_secs(60),
        ));
        let late = watch(|| "t/late".into(), Instant::now() - GRACE * 2);
        drop(late);
        // Other tests of this process may overrun too, never fewer.
        assert!(overruns() > before);
    }
}
