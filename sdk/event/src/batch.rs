//! Batches: many encoded events framed in one byte buffer.
//!
//! A detector's `detect` receives a batch as a single `list<u8>`: one copy
//! into the guest and one guest allocation however many events it holds.
//! (The first design sent a `list<event>` index next to the bytes; lowering
//! that index record by record cost the host more than the no-op plugin's
//! whole budget.) Each event is one frame:
//!
//! ```text
//! frame := u64:id u32:len value[len]      little-endian; value is an object
//! ```
//!
//! [`Batch`] builds the buffer and keeps a host-side index of where each
//! event sits; [`frames`] reads it back, which is all a plugin needs.

use crate::EventRef;
use crate::project::Projection;

/// Bytes of a frame header: the id and the length.
pub const FRAME_HEADER: usize = 12;

/// Where one event sits in [`Batch::wire`]; kept by the host, never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Host-assigned event id (the line number for JSON Lines input).
    pub id: u64,
    /// Offset of the encoded value (after the frame header).
    pub offset: u32,
    /// Length of the encoded value.
    pub len: u32,
}

/// Events framed for the `detect` boundary, plus an index of the frames.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    wire: Vec<u8>,
    frames: Vec<Frame>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// Remove every event, keeping the buffers.
    pub fn clear(&mut self) {
        self.wire.clear();
        self.frames.clear();
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether the batch has no events.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The framed bytes exactly as a detector receives them.
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    /// [`Batch::wire`] as the `Vec` that wasmtime's generated bindings take
    /// for the WIT `event-batch` alias.
    pub fn wire_buffer(&self) -> &Vec<u8> {
        &self.wire
    }

    /// Where each event sits, in order.
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    /// `(id, encoded value)` of every event, in order.
    pub fn events(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        self.frames.iter().map(|f| (f.id, self.value(f)))
    }

    fn value(&self, frame: &Frame) -> &[u8] {
        &self.wire[frame.offset as usize..(frame.offset + frame.len) as usize]
    }

    /// Append an event whose value `write` appends to the buffer it is
    /// given. If `write` fails, the batch is left as it was.
    pub fn push_with<E>(
        &mut self,
        id: u64,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let header = self.wire.len();
        self.wire.extend_from_slice(&id.to_le_bytes());
        self.wire.extend_from_slice(&[0; 4]);
        let offset = self.wire.len();
        if let Err(e) = write(&mut self.wire) {
            self.wire.truncate(header);
            return Err(e);
        }
        let len = self.wire.len() - offset;
        // A single event is bounded far below 4 GiB by the input reader; a
        // batch past that would have broken offsets, so refuse it loudly.
        let (Ok(offset32), Ok(len32)) = (u32::try_from(offset), u32::try_from(len)) else {
            panic!("an event batch grew past 4 GiB; use smaller batches");
        };
        self.wire[header + 8..offset].copy_from_slice(&len32.to_le_bytes());
        self.frames.push(Frame {
            id,
            offset: offset32,
            len: len32,
        });
        Ok(())
    }

    /// Append an event from JSON text (one object).
    #[cfg(feature = "encode")]
    pub fn push_json(&mut self, id: u64, json: &[u8]) -> Result<(), crate::EncodeError> {
        self.push_with(id, |out| crate::encode_json(json, out))
    }

    /// Fill `out` (cleared first) with every event of this batch cut down by
    /// `projection`. Events that are not well-formed objects become empty
    /// objects, so ids and order are kept.
    pub fn project_into(&self, projection: &Projection, out: &mut Batch) {
        out.clear();
        out.wire.reserve(self.wire.len() / 4);
        out.frames.reserve(self.frames.len());
        for frame in &self.frames {
            let value = self.value(frame);
            let _ = out.push_with(frame.id, |buf| {
                if !projection.project(value, buf) {
                    buf.extend_from_slice(&EMPTY_OBJECT);
                }
                Ok::<(), ()>(())
            });
        }
    }
}

/// An object with no entries.
const EMPTY_OBJECT: [u8; 9] = [crate::tag::OBJECT, 0, 0, 0, 0, 0, 0, 0, 0];

/// A frame that does not hold what the format promises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    /// Byte offset of the bad frame in the batch.
    pub at: usize,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "event frame at byte {}: {}", self.at, self.reason)
    }
}

impl std::error::Error for FrameError {}

/// Read the events of a framed batch: `(id, event)` per frame, in order,
/// or an error at the first frame that is cut short or not an object
/// (after which the iterator ends).
pub fn frames(wire: &[u8]) -> Frames<'_> {
    Frames { wire, at: 0 }
}

/// Iterator returned by [`frames`].
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    wire: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<(u64, EventRef<'a>), FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.wire.len() {
            return None;
        }
        let at = self.at;
        let rest = &self.wire[at..];
        let fail = |reason: &'static str| Some(Err(FrameError { at, reason }));
        let Some((header, body)) = rest.split_at_checked(FRAME_HEADER) else {
            self.at = self.wire.len();
            return fail("header cut short");
        };
        let id = u64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(header[8..].try_into().expect("4 bytes")) as usize;
        let Some(value) = body.get(..len) else {
            self.at = self.wire.len();
            return fail("value cut short");
        };
        let Some(event) = EventRef::new(value) else {
            self.at = self.wire.len();
            return fail("value is not one encoded object");
        };
        self.at = at + FRAME_HEADER + len;
        Some(Ok((id, event)))
    }
}

#[cfg(all(test, feature = "encode"))]
mod tests {
    use super::*;

    fn batch(events: &[(u64, &str)]) -> Batch {
        let mut b = Batch::new();
        for (id, json) in events {
            b.push_json(*id, json.as_bytes()).expect("valid");
        }
        b
    }

    /// `(id, event as JSON)` of every frame of `b`, which must be well formed.
    fn read_back(b: &Batch) -> Vec<(u64, String)> {
        frames(b.wire())
            .map(|r| r.map(|(id, e)| (id, e.to_json())))
            .collect::<Result<_, _>>()
            .expect("well formed")
    }

    #[test]
    fn frames_read_back_ids_and_values_in_order() {
        let b = batch(&[(3, r#"{"a":"x"}"#), (7, r#"{"b":{"c":2}}"#)]);
        let read = read_back(&b);
        assert_eq!(
            read,
            vec![
                (3, r#"{"a":"x"}"#.to_owned()),
                (7, r#"{"b":{"c":2}}"#.to_owned())
            ]
        );
        assert_eq!(b.frames().iter().map(|f| f.id).collect::<Vec<_>>(), [3, 7]);
    }

    #[test]
    fn a_failed_push_leaves_the_batch_unchanged() {
        let mut b = batch(&[(1, r#"{"a":1}"#)]);
        let before = b.clone();
        assert!(b.push_json(2, b"[1,2]").is_err());
        assert!(b.push_json(3, b"{oops").is_err());
        assert_eq!(b, before);
    }

    #[test]
    fn truncated_or_garbled_frames_are_errors_not_panics() {
        let b = batch(&[(1, r#"{"a":1}"#), (2, r#"{"b":2}"#)]);
        let wire = b.wire();
        let end_of_first = FRAME_HEADER + b.frames()[0].len as usize;
        for cut in 1..wire.len() {
            let results: Vec<_> = frames(&wire[..cut]).collect();
            let complete = usize::from(cut >= end_of_first);
            assert_eq!(
                results.iter().filter(|r| r.is_ok()).count(),
                complete,
                "cut at {cut}"
            );
            // The frame the cut falls in is an error and ends the iteration.
            assert_eq!(
                results.last().map(Result::is_err),
                Some(cut != end_of_first),
                "cut at {cut}"
            );
        }
        let mut garbled = wire.to_vec();
        garbled[FRAME_HEADER] = 0x05; // first value now claims to be a string
        let first = frames(&garbled).next().expect("one item");
        assert_eq!(
            first,
            Err(FrameError {
                at: 0,
                reason: "value is not one encoded object"
            })
        );
        assert_eq!(frames(&garbled).count(), 1);
    }

    #[test]
    fn projection_keeps_ids_and_order_and_cuts_values() {
        let b = batch(&[
            (1, r#"{"keep":1,"drop":2}"#),
            (2, r#"{"drop":3}"#),
            (5, r#"{"keep":{"x":true}}"#),
        ]);
        let mut out = Batch::new();
        b.project_into(&Projection::new(["keep"]), &mut out);
        let read = read_back(&out);
        assert_eq!(
            read,
            vec![
                (1, r#"{"keep":1}"#.to_owned()),
                (2, "{}".to_owned()),
                (5, r#"{"keep":{"x":true}}"#.to_owned())
            ]
        );
    }
}
