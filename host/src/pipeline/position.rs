//! Where a source is. Opaque to the dispatcher; a source hands one out
//! with each batch and is told (`ack`) when the log holds it.

use serde::{Deserialize, Serialize};

/// A position in an input: the byte offset and the number of lines
/// consumed before it. What a batch record keeps, so that a resumed run
/// continues after the last batch the log holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Bytes consumed.
    pub offset: u64,
    /// Lines consumed (the next line is `line + 1`).
    pub line: u64,
}
