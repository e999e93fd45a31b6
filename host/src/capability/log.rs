//! `vigil:plugin/log`: levelled, structured logs attributed to the plugin.
//!
//! Records are collected per call and handed back with the call's outcome
//! (the dispatcher forwards them to the host log). A per-call budget stops a
//! plugin from flooding the host: past it, calls return `rate-limited` and
//! the host counts what was dropped.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use wasmtime::component::{HasData, Linker};

use super::{CallView, Capability, HostCapability, NoScope, Setup, clamp};
use crate::bindings::vigil::plugin::log::{self as wit, Level};
use crate::capability::tape::{RecordedError, Tape};

/// Longest message kept, in bytes.
const MAX_MESSAGE_BYTES: usize = 4096;
/// Most structured fields kept per record.
const MAX_FIELDS: usize = 32;
/// Longest field key or value kept, in bytes.
const MAX_FIELD_BYTES: usize = 1024;

/// Where a log record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSource {
    /// A `log.emit` call.
    Plugin,
    /// The guest's WASI stdout, captured.
    Stdout,
    /// The guest's WASI stderr, captured.
    Stderr,
}

/// Severity of a log record (mirrors WIT `log.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Trace.
    Trace,
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
}

/// One record a plugin produced during a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Where it came from.
    pub source: LogSource,
    /// Its level (captured stdout is `Info`, stderr `Warn`).
    pub level: LogLevel,
    /// The message, clamped.
    pub message: String,
    /// Structured fields, clamped.
    pub fields: Vec<(String, String)>,
}

/// Per-call log context.
#[derive(Debug)]
pub struct LogCtx {
    budget: usize,
    /// Records emitted so far in this call.
    pub records: Vec<LogRecord>,
    /// Records refused because the budget was spent.
    pub dropped: u64,
}

impl LogCtx {
    /// A context allowing `budget` records per call.
    pub fn new(budget: usize) -> Self {
        LogCtx {
            budget,
            records: Vec::new(),
            dropped: 0,
        }
    }
}

/// Borrowed view implementing the generated `Host` trait.
pub struct Log<'a> {
    ctx: &'a mut LogCtx,
    tape: &'a mut Tape,
}

impl RecordedError for wit::Error {
    fn code(&self) -> String {
        match self {
            wit::Error::AccessDenied => "access-denied".into(),
            wit::Error::RateLimited => "rate-limited".into(),
        }
    }
    fn from_code(code: &str) -> Option<Self> {
        match code {
            "access-denied" => Some(wit::Error::AccessDenied),
            "rate-limited" => Some(wit::Error::RateLimited),
            _ => None,
        }
    }
    fn access_denied() -> Self {
        wit::Error::AccessDenied
    }
}

impl LogLevel {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl wit::Host for Log<'_> {
    fn emit(
        &mut self,
        level: Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> Result<(), wit::Error> {
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        // Guest-controlled: clamp sizes before keeping or recording anything.
        let message = clamp(message, MAX_MESSAGE_BYTES);
        let fields: Vec<(String, String)> = fields
            .into_iter()
            .take(MAX_FIELDS)
            .map(|(k, v)| (clamp(k, MAX_FIELD_BYTES), clamp(v, MAX_FIELD_BYTES)))
            .collect();
        let args = json!({ "level": level.name(), "message": message, "fields": fields });
        let ctx = &mut *self.ctx;
        self.tape.call(Capability::Log, "emit", args, || {
            if ctx.records.len() >= ctx.budget {
                ctx.dropped += 1;
                return Err(wit::Error::RateLimited);
            }
            ctx.records.push(LogRecord {
                source: LogSource::Plugin,
                level,
                message,
                fields,
            });
            Ok(())
        })
    }
}

/// `HasData` marker for the log capability.
pub struct LogData;

impl HasData for LogData {
    type Data<'a> = Log<'a>;
}

impl HostCapability for LogData {
    const SUMMARY: &'static str = "structured logging into the host's log";
    const PREINIT: bool = false;
    type Grant = NoScope;
    /// Records allowed per call.
    type Shared = usize;
    type Ctx = LogCtx;

    fn resolve(_: NoScope, setup: &Setup<'_>) -> Result<usize, String> {
        Ok(setup.log_records_per_call)
    }

    fn start_call(budget: &Arc<usize>, _deadline: Instant) -> LogCtx {
        LogCtx::new(**budget)
    }

    fn add_to_linker<T: CallView<Self> + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, LogData>(linker, |t| {
            let (ctx, tape) = t.parts();
            Log { ctx, tape }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::vigil::plugin::log::Host;

    #[test]
    fn records_past_the_budget_are_rate_limited_and_counted() {
        let mut ctx = LogCtx::new(2);
        let mut tape = Tape::default();
        let mut log = Log {
            ctx: &mut ctx,
            tape: &mut tape,
        };
        assert!(log.emit(Level::Info, "a".into(), vec![]).is_ok());
        assert!(
            log.emit(Level::Warn, "b".into(), vec![("k".into(), "v".into())])
                .is_ok()
        );
        assert_eq!(
            log.emit(Level::Info, "c".into(), vec![]),
            Err(wit::Error::RateLimited)
        );
        assert_eq!(ctx.records.len(), 2);
        assert_eq!(ctx.dropped, 1);
        assert_eq!(
            ctx.records[1].fields,
            vec![("k".to_owned(), "v".to_owned())]
        );
    }

    #[test]
    fn oversized_messages_are_clamped() {
        let mut ctx = LogCtx::new(1);
        let mut tape = Tape::default();
        Log {
            ctx: &mut ctx,
            tape: &mut tape,
        }
        .emit(Level::Error, "x".repeat(MAX_MESSAGE_BYTES * 4), vec![])
        .expect("within budget");
        assert!(ctx.records[0].message.len() <= MAX_MESSAGE_BYTES + 3);
    }
}
