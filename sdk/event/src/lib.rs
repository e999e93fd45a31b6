//! The Vigil event encoding: how events cross the host/plugin boundary.
//!
//! Events arrive as JSON, but handing JSON text to every plugin would make each
//! plugin parse every event in full, and handing WIT records with one string
//! per field would cost the guest an allocation per field. Instead the host
//! encodes each event once into a compact tree (format in `wit/types.wit`,
//! type `event-batch`) whose lists and objects carry their byte size, so a
//! lookup by path skips whole subtrees and never allocates.
//!
//! [`Batch`] frames many encoded events into the one buffer a detector
//! receives and [`frames`] reads them back;
//! [`EventRef`] reads the encoding (used by plugins, no dependencies);
//! [`encode_json`] writes it (feature `encode`, used by the host and by
//! native plugin tests); [`Projection`] cuts an encoded event down to the
//! fields a plugin declared it reads.

mod batch;
#[cfg(feature = "encode")]
mod encode;
mod project;
mod read;

pub use batch::{Batch, FRAME_HEADER, Frame, FrameError, Frames, frames};
#[cfg(feature = "encode")]
pub use encode::{EncodeError, encode_json};
pub use project::Projection;
pub use read::{EventRef, ListRef, ObjectRef, Value};

/// Type tags of the encoding; the numbering is part of the WIT contract.
pub(crate) mod tag {
    pub const NULL: u8 = 0x00;
    pub const FALSE: u8 = 0x01;
    pub const TRUE: u8 = 0x02;
    pub const INT: u8 = 0x03;
    pub const FLOAT: u8 = 0x04;
    pub const STRING: u8 = 0x05;
    pub const LIST: u8 = 0x06;
    pub const OBJECT: u8 = 0x07;
    pub const UINT: u8 = 0x08;
}
