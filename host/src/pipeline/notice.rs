//! Records that reach the audit log from outside the pipeline while a run
//! goes on: a reload's new generation, a refused reload, a removed pack.
//!
//! The audit stage is the log's only writer during a run, so a control
//! thread (the pack watcher, the admin API) posts a [`Notice`] on the
//! host's [`NoticeBoard`] instead of writing. While a run is attached the
//! notice travels on the audit stage's own inbox, in order with the
//! batches; otherwise it waits on the board and the host writes it before
//! the next run starts or when it closes.
//!
//! Ordering that hot reload relies on: post a generation's notice *before*
//! making it current. A batch that runs on the new generation was read
//! after the swap, so it reaches the audit stage's inbox after the notice,
//! and the log shows every generation's `pack-load` before its first call.
//! The other way round is not a boundary: batches dispatched on the old
//! generation before the swap (at most the pipeline's depth, two, plus the
//! one being read) are recorded after the notice and still name the old
//! generation in their invocation records.

use std::sync::{Arc, Mutex};

use crate::audit::record::Lifecycle;
use crate::load::pack::Generation;

/// Something to record that happened outside the pipeline.
#[derive(Debug)]
pub enum Notice {
    /// A generation about to become its pack's current one: its
    /// `pack-load` record (components stored, grants listed), then
    /// `change` (a `generation-change` record saying what it replaces and
    /// why).
    Generation {
        /// The new generation.
        generation: Arc<Generation>,
        /// What changed and what triggered it.
        change: Lifecycle,
    },
    /// Any other lifecycle record (a refused reload, a removed pack).
    Lifecycle(Lifecycle),
}

/// How an attached run takes a notice: `Err` gives it back when the run's
/// audit stage has stopped.
type Deliver = Box<dyn Fn(Box<Notice>) -> Result<(), Box<Notice>> + Send>;

/// Where notices wait for the audit log (see the module documentation).
#[derive(Default)]
pub struct NoticeBoard {
    inner: Mutex<Board>,
}

#[derive(Default)]
struct Board {
    live: Option<Deliver>,
    pending: Vec<Notice>,
}

impl std::fmt::Debug for NoticeBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoticeBoard").finish_non_exhaustive()
    }
}

impl NoticeBoard {
    /// Post `notice`. With a run attached it is in the audit stage's inbox
    /// when this returns (it may wait while that inbox is full); otherwise
    /// it waits on the board.
    pub fn post(&self, notice: Notice) {
        let mut board = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let notice = match &board.live {
            Some(deliver) => match deliver(Box::new(notice)) {
                Ok(()) => return,
                Err(notice) => *notice,
            },
            None => notice,
        };
        board.pending.push(notice);
    }

    /// Post `notice` from the audit stage's own thread (a sink it calls):
    /// never through the inbox, which that thread alone drains (it could
    /// wait on itself); the audit stage writes it after its current
    /// message, or the host before the next run or at close.
    pub fn post_deferred(&self, notice: Notice) {
        let mut board = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        board.pending.push(notice);
    }

    /// A run starts taking notices through `deliver`. Notices still
    /// waiting (posted after the host last wrote them) go first, under the
    /// same lock, so none is overtaken by a batch of this run.
    pub(crate) fn attach(&self, deliver: Deliver) {
        let mut board = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut kept = Vec::new();
        for notice in std::mem::take(&mut board.pending) {
            if let Err(notice) = deliver(Box::new(notice)) {
                kept.push(*notice);
            }
        }
        board.pending = kept;
        board.live = Some(deliver);
    }

    /// The run stops taking notices: later ones wait on the board. Returns
    /// once any notice being delivered is in the inbox.
    pub(crate) fn detach(&self) {
        let mut board = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        board.live = None;
    }

    /// The notices posted while no run was attached, oldest first.
    pub fn take_pending(&self) -> Vec<Notice> {
        let mut board = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut board.pending)
    }
}
