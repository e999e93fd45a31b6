//! Events in, findings out: a [`source::EventSource`] feeds batches to
//! [`dispatch`], which runs them through every pack's detectors, records
//! them in the audit log and emits findings (after [`enrich`]ment, when a
//! pack has enrichers) to a [`sink::FindingSink`]; [`record`] turns what it
//! handles into the audit log's records; [`notice`] carries records from
//! outside a run (reloads) to its audit stage, and [`observe`] tells a
//! long-running host what was recorded (metrics).

pub mod dispatch;
pub mod enrich;
pub mod host_log;
pub mod input;
pub mod notice;
pub mod observe;
pub mod position;
pub mod record;
pub mod sink;
pub mod source;
