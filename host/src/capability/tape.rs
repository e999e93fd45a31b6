//! Every host call a plugin makes goes through a [`Tape`]: live calls are
//! recorded (interface, function, arguments, result), and on replay the
//! recorded results are played back instead of asking the host again, so a
//! decision that depended on the clock or on state is reproduced exactly.

use std::fmt::Debug;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::capability::Capability;

/// One capability call made by a plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostCall {
    /// Capability name, e.g. `state`.
    pub interface: String,
    /// Function, e.g. `get`.
    pub function: String,
    /// Arguments by name.
    pub args: Value,
    /// Whether the host allowed it.
    pub status: CallStatus,
    /// `{"ok": value}` or `{"error": code}`: what the guest received.
    pub result: Value,
    /// Why the host refused or failed, beyond the error code the guest
    /// got (e.g. which origin was not granted, who revoked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Whether a host call was allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallStatus {
    /// Allowed and succeeded.
    Allowed,
    /// Refused by the grant (`access-denied`).
    Denied,
    /// Allowed but failed (quota, storage, rate limit).
    Failed,
}

/// One plugin's view of the operator's revocations, asked before every
/// live host call. Implemented by `revocation::RevocationScope`; a trait so
/// that capabilities and the call path, below the revocation list and its
/// audit trail, do not depend on them.
pub trait RevocationCheck: Debug + Send + Sync {
    /// Why `capability` is revoked for this plugin, if it is.
    fn revoked(&self, capability: Capability) -> Option<String>;
    /// Who restored a capability of this plugin since the first `*seen`
    /// restores the host observed, if anyone did; advances `*seen`.
    fn restored_since(&self, seen: &mut usize) -> Option<String>;
}

/// An error variant of a capability interface, in the form the audit log
/// records it.
pub trait RecordedError: Sized {
    /// The WIT case name, e.g. `access-denied`, with a payload after `: `.
    fn code(&self) -> String;
    /// Rebuild the error from [`RecordedError::code`].
    fn from_code(code: &str) -> Option<Self>;
    /// `access-denied`: what a diverging replay returns to the guest.
    fn access_denied() -> Self;
    /// Whether the host refused (denied) or failed.
    fn status(&self) -> CallStatus {
        if self.code() == "access-denied" {
            CallStatus::Denied
        } else {
            CallStatus::Failed
        }
    }
}

/// Most host calls recorded per plugin call. Guest-controlled: a plugin
/// looping on a host call cannot grow the host's memory or the log without
/// bound; past the limit every call is refused (`access-denied`, not run)
/// and counted in the invocation's `host_calls_refused`.
pub const MAX_RECORDED_CALLS: usize = 10_000;
/// Most bytes of recorded arguments and results per plugin call (same rule).
pub const MAX_RECORDED_BYTES: usize = 8 << 20;
/// Longest `detail` (why a call was refused) kept per host call.
pub const MAX_DETAIL_BYTES: usize = 1024;

/// [`RecordedError`] for an interface whose only error is `access-denied`
/// (`clock`, `config`): one definition instead of one copy per interface.
#[macro_export]
macro_rules! access_denied_only_error {
    ($error:ty) => {
        impl $crate::capability::tape::RecordedError for $error {
            fn code(&self) -> String {
                "access-denied".into()
            }
            fn from_code(code: &str) -> Option<Self> {
                (code == "access-denied").then_some(<$error>::AccessDenied)
            }
            fn access_denied() -> Self {
                <$error>::AccessDenied
            }
        }
    };
}

/// Host calls of one plugin call: being recorded, or being replayed.
#[derive(Debug)]
pub enum Tape {
    /// Live: run each call and record it.
    Record(Recorder),
    /// Replay: answer each call from the record.
    Replay(Replayer),
}

impl Default for Tape {
    fn default() -> Self {
        Tape::Record(Recorder::default())
    }
}

/// The host calls of a live plugin call.
#[derive(Debug, Default)]
pub struct Recorder {
    calls: Vec<HostCall>,
    bytes: usize,
    refused: u64,
    /// Revocations checked before every call (`None`: nothing can be revoked).
    revocations: Option<Arc<dyn RevocationCheck>>,
}

/// A refused or failed host call: the error the guest gets and, for the
/// audit log only, why.
#[derive(Debug)]
pub struct Refusal<E> {
    /// What the guest receives.
    pub error: E,
    /// Why, recorded as the host call's `detail`.
    pub detail: Option<String>,
}

impl<E> From<E> for Refusal<E> {
    fn from(error: E) -> Self {
        Refusal {
            error,
            detail: None,
        }
    }
}

/// Plays back recorded host calls and notes the first divergence.
#[derive(Debug)]
pub struct Replayer {
    calls: Vec<HostCall>,
    next: usize,
    /// Calls the live run refused past the recording limits.
    refused: u64,
    divergence: Option<String>,
}

impl Tape {
    /// A live tape that refuses calls to capabilities revoked in `scope`.
    pub fn recording(scope: Arc<dyn RevocationCheck>) -> Self {
        Tape::Record(Recorder {
            revocations: Some(scope),
            ..Recorder::default()
        })
    }

    /// A tape that answers from `calls`, then refuses `refused` more.
    pub fn replay(calls: Vec<HostCall>, refused: u64) -> Self {
        Tape::Replay(Replayer {
            calls,
            next: 0,
            refused,
            divergence: None,
        })
    }

    /// Make (or replay) one host call. `live` runs only when recording.
    pub fn call<T, E>(
        &mut self,
        interface: Capability,
        function: &'static str,
        args: Value,
        live: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: RecordedError,
    {
        self.call_detailed(interface, function, args, || live().map_err(Refusal::from))
    }

    /// [`Tape::call`] for a capability that explains its refusals: the
    /// [`Refusal::detail`] goes into the record, only the error to the guest.
    pub fn call_detailed<T, E>(
        &mut self,
        interface: Capability,
        function: &'static str,
        args: Value,
        live: impl FnOnce() -> Result<T, Refusal<E>>,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: RecordedError,
    {
        self.call_summarised(
            interface,
            function,
            args,
            live,
            |value| json!(value),
            |value| value,
            |recorded| serde_json::from_value(recorded).map_err(|e| e.to_string()),
        )
    }

    /// [`Tape::call_detailed`] for a result that is recorded as a summary
    /// rather than in full (`files.read`: size and digest, the bytes kept
    /// elsewhere). `live` produces the full result; `summary` is what the
    /// record holds; `output` is what the guest gets from a live result and
    /// `restore` rebuilds it from a recorded summary on replay (an `Err`
    /// there is a divergence).
    #[allow(clippy::too_many_arguments)]
    pub fn call_summarised<T, U, E>(
        &mut self,
        interface: Capability,
        function: &'static str,
        args: Value,
        live: impl FnOnce() -> Result<T, Refusal<E>>,
        summary: impl FnOnce(&T) -> Value,
        output: impl FnOnce(T) -> U,
        restore: impl FnOnce(Value) -> Result<U, String>,
    ) -> Result<U, E>
    where
        E: RecordedError,
    {
        match self {
            Tape::Record(recorder) => {
                let size = value_bytes(&args);
                if recorder.calls.len() >= MAX_RECORDED_CALLS
                    || recorder.bytes + size > MAX_RECORDED_BYTES
                {
                    recorder.refused += 1;
                    return Err(E::access_denied());
                }
                // Revocation is checked here, on every call of every
                // capability, so a revoked grant needs no help from the
                // capability's own code.
                let revoked = (recorder.revocations.as_ref()).and_then(|s| s.revoked(interface));
                let result = match revoked {
                    Some(why) => Err(Refusal {
                        error: E::access_denied(),
                        detail: Some(why),
                    }),
                    None => live(),
                };
                let (status, recorded, detail) = match &result {
                    Ok(value) => (CallStatus::Allowed, json!({ "ok": summary(value) }), None),
                    Err(r) => (
                        r.error.status(),
                        json!({ "error": r.error.code() }),
                        r.detail.clone(),
                    ),
                };
                // The detail is host text that may quote guest input (a
                // refused path): clamped and counted like the rest.
                let detail = detail.map(|d| crate::plugin_text::clamp(d, MAX_DETAIL_BYTES));
                recorder.bytes +=
                    size + value_bytes(&recorded) + detail.as_ref().map_or(0, String::len);
                recorder.calls.push(HostCall {
                    interface: interface.name().to_owned(),
                    function: function.to_owned(),
                    args,
                    status,
                    result: recorded,
                    detail,
                });
                result.map(output).map_err(|r| r.error)
            }
            Tape::Replay(replayer) => replayer.answer(interface, function, args, restore),
        }
    }

    /// The recorded calls and how many were refused past the limits
    /// (nothing for a replay tape).
    pub fn into_calls(self) -> (Vec<HostCall>, u64) {
        match self {
            Tape::Record(r) => (r.calls, r.refused),
            Tape::Replay(_) => (Vec::new(), 0),
        }
    }

    /// For a replay tape: the first way the replay differed from the
    /// record, including calls the record has that the replay never made.
    pub fn divergence(&self) -> Option<String> {
        let Tape::Replay(r) = self else { return None };
        if let Some(d) = &r.divergence {
            return Some(d.clone());
        }
        r.calls.get(r.next).map(|missing| {
            format!(
                "host call #{}: the record has {}, the replay made no further host calls",
                r.next + 1,
                describe(missing)
            )
        })
    }
}

/// Bytes of text in a JSON value: a cheap bound on what recording it costs.
fn value_bytes(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len() + 2,
        Value::Array(items) => items.iter().map(value_bytes).sum::<usize>() + 2,
        Value::Object(map) => {
            map.iter()
                .map(|(k, v)| k.len() + 3 + value_bytes(v))
                .sum::<usize>()
                + 2
        }
        _ => 8,
    }
}

fn describe(call: &HostCall) -> String {
    format!("{}.{}({})", call.interface, call.function, call.args)
}

impl Replayer {
    fn answer<U, E: RecordedError>(
        &mut self,
        interface: Capability,
        function: &'static str,
        args: Value,
        restore: impl FnOnce(Value) -> Result<U, String>,
    ) -> Result<U, E> {
        if self.next >= self.calls.len() && self.refused > 0 {
            self.refused -= 1;
            return Err(E::access_denied());
        }
        let index = self.next;
        self.next += 1;
        let made = HostCall {
            interface: interface.name().to_owned(),
            function: function.to_owned(),
            args,
            status: CallStatus::Allowed,
            result: Value::Null,
            detail: None,
        };
        let recorded = match self.calls.get(index) {
            Some(r)
                if r.interface == made.interface
                    && r.function == made.function
                    && r.args == made.args =>
            {
                r.result.clone()
            }
            other => {
                let had = other.map_or("nothing".to_owned(), describe);
                self.diverge(format!(
                    "host call #{}: the record has {had}, the replay made {}",
                    index + 1,
                    describe(&made)
                ));
                return Err(E::access_denied());
            }
        };
        let decoded = if let Some(ok) = recorded.get("ok") {
            match restore(ok.clone()) {
                Ok(value) => Some(Ok(value)),
                Err(why) => {
                    self.diverge(format!(
                        "host call #{}: recorded result {} does not fit {}: {why}",
                        index + 1,
                        recorded,
                        describe(&made)
                    ));
                    return Err(E::access_denied());
                }
            }
        } else {
            recorded
                .get("error")
                .and_then(Value::as_str)
                .and_then(E::from_code)
                .map(Err)
        };
        decoded.unwrap_or_else(|| {
            self.diverge(format!(
                "host call #{}: recorded result {} does not fit {}",
                index + 1,
                recorded,
                describe(&made)
            ));
            Err(E::access_denied())
        })
    }

    fn diverge(&mut self, what: String) {
        self.divergence.get_or_insert(what);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Denied;

    impl RecordedError for Denied {
        fn code(&self) -> String {
            "access-denied".into()
        }
        fn from_code(code: &str) -> Option<Self> {
            (code == "access-denied").then_some(Denied)
        }
        fn access_denied() -> Self {
            Denied
        }
    }

    #[test]
    fn a_recorded_call_replays_its_result_without_running_live() {
        let mut tape = Tape::default();
        let got: Result<u64, Denied> =
            tape.call(Capability::Clock, "wall-now", json!({}), || Ok(42));
        assert_eq!(got, Ok(42));
        let mut replay = Tape::replay(tape.into_calls().0, 0);
        let again: Result<u64, Denied> =
            replay.call(Capability::Clock, "wall-now", json!({}), || {
                panic!("not live")
            });
        assert_eq!(again, Ok(42));
        assert_eq!(replay.divergence(), None);
    }

    #[test]
    fn different_arguments_and_missing_calls_are_divergences() {
        let mut tape = Tape::default();
        let _: Result<Option<String>, Denied> =
            tape.call(Capability::State, "get", json!({"key": "a"}), || Ok(None));
        let _: Result<Option<String>, Denied> =
            tape.call(Capability::State, "get", json!({"key": "b"}), || {
                Err(Denied)
            });
        assert_eq!(
            tape_status(&tape),
            vec![CallStatus::Allowed, CallStatus::Denied]
        );

        let (calls, _) = tape.into_calls();
        let mut replay = Tape::replay(calls.clone(), 0);
        let _: Result<Option<String>, Denied> =
            replay.call(Capability::State, "get", json!({"key": "x"}), || Ok(None));
        let d = replay.divergence().expect("diverged");
        assert!(d.contains("#1") && d.contains("\"x\""), "{d}");

        let mut short = Tape::replay(calls, 0);
        let _: Result<Option<String>, Denied> =
            short.call(Capability::State, "get", json!({"key": "a"}), || Ok(None));
        let d = short.divergence().expect("a call is missing");
        assert!(d.contains("#2") && d.contains("no further"), "{d}");
    }

    #[test]
    fn calls_past_the_recording_limit_are_refused_and_counted() {
        let mut tape = Tape::default();
        for _ in 0..MAX_RECORDED_CALLS + 5 {
            let _: Result<u64, Denied> =
                tape.call(Capability::Clock, "wall-now", json!({}), || Ok(1));
        }
        let (calls, refused) = tape.into_calls();
        assert_eq!((calls.len(), refused), (MAX_RECORDED_CALLS, 5));
    }

    fn tape_status(tape: &Tape) -> Vec<CallStatus> {
        match tape {
            Tape::Record(r) => r.calls.iter().map(|c| c.status).collect(),
            Tape::Replay(_) => Vec::new(),
        }
    }
}
