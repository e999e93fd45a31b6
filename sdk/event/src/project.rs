//! Field projection: copy only the fields a plugin reads.
//!
//! A plugin that reads three fields of a 2 KB event should not pay for
//! copying and scanning the other twenty-two. After `init` a plugin may name
//! the dotted paths it reads; the host then sends each event projected onto
//! those paths: same encoding, same nesting, other entries left out. Values
//! at a named path (strings, whole lists or objects) are copied verbatim.

use crate::tag;

/// A set of dotted paths compiled into a tree, ready to project events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    children: Vec<(Vec<u8>, Projection)>,
    /// The path ends here: keep the whole value.
    whole: bool,
}

impl Projection {
    /// Compile dotted paths such as `Event.EventData.Image`. Empty paths and
    /// empty segments are ignored.
    pub fn new<S: AsRef<str>>(paths: impl IntoIterator<Item = S>) -> Self {
        let mut root = Projection::default();
        for path in paths {
            let segments: Vec<&str> = path.as_ref().split('.').collect();
            if segments.iter().any(|s| s.is_empty()) {
                continue;
            }
            let mut node = &mut root;
            for segment in segments {
                let index = match node
                    .children
                    .iter()
                    .position(|(k, _)| k == segment.as_bytes())
                {
                    Some(i) => i,
                    None => {
                        node.children
                            .push((segment.as_bytes().to_vec(), Projection::default()));
                        node.children.len() - 1
                    }
                };
                node = &mut node.children[index].1;
            }
            node.whole = true;
        }
        root
    }

    /// Append the projection of the encoded event `event` to `out`.
    /// Returns `false` (leaving `out` as it was) if `event` is not a
    /// well-formed encoded object.
    pub fn project(&self, event: &[u8], out: &mut Vec<u8>) -> bool {
        let start = out.len();
        let ok = event.first() == Some(&tag::OBJECT) && self.project_object(event, out).is_some();
        if !ok {
            out.truncate(start);
        }
        ok
    }

    /// `bytes` starts with an object value. Writes the projected object.
    ///
    /// Only the first entry with a given key is projected, as readers only
    /// ever see the first, and the scan stops once every named key has been
    /// seen: a rule's fields usually sit early in a Sysmon `EventData`.
    fn project_object(&self, bytes: &[u8], out: &mut Vec<u8>) -> Option<()> {
        let count = u32::from_le_bytes(bytes.get(1..5)?.try_into().ok()?);
        let size = u32::from_le_bytes(bytes.get(5..9)?.try_into().ok()?) as usize;
        let mut rest = bytes.get(9..9 + size)?;
        out.push(tag::OBJECT);
        let header = out.len();
        out.extend_from_slice(&[0; 8]);
        let mut kept = 0u32;
        // Children seen so far, one bit each; a projection with more than
        // 64 keys at one level simply scans the whole object.
        let mut seen = 0u64;
        let mut unseen = if self.children.len() <= 64 {
            self.children.len()
        } else {
            usize::MAX
        };
        for _ in 0..count {
            if unseen == 0 {
                break;
            }
            let key_len = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?) as usize;
            let key = rest.get(2..2 + key_len)?;
            let value = &rest[2 + key_len..];
            let value_len = crate::read::value_len(value)?;
            let found = self.children.iter().position(|(k, _)| {
                k.len() == key.len() && k.first() == key.first() && k.as_slice() == key
            });
            if let Some(index) = found {
                let bit = 1u64.checked_shl(index as u32).unwrap_or(0);
                if seen & bit == 0 {
                    seen |= bit;
                    unseen = unseen.saturating_sub(usize::from(bit != 0));
                    let child = &self.children[index].1;
                    if child.whole {
                        out.extend_from_slice(&rest[..2 + key_len + value_len]);
                        kept += 1;
                    } else if value.first() == Some(&tag::OBJECT) {
                        let entry_start = out.len();
                        out.extend_from_slice(&rest[..2 + key_len]);
                        child.project_object(&value[..value_len], out)?;
                        // Leave out objects in which nothing matched.
                        if out[entry_start + 2 + key_len + 1..entry_start + 2 + key_len + 5]
                            == [0, 0, 0, 0]
                        {
                            out.truncate(entry_start);
                        } else {
                            kept += 1;
                        }
                    }
                }
            }
            rest = &rest[2 + key_len + value_len..];
        }
        let written = u32::try_from(out.len() - header - 8).ok()?;
        out[header..header + 4].copy_from_slice(&kept.to_le_bytes());
        out[header + 4..header + 8].copy_from_slice(&written.to_le_bytes());
        Some(())
    }
}

#[cfg(all(test, feature = "encode"))]
mod tests {
    use super::*;
    use crate::{EventRef, encode_json};

    fn encode(json: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode_json(json.as_bytes(), &mut out).expect("valid");
        out
    }

    #[test]
    fn only_named_paths_survive_with_their_nesting() {
        let event = encode(
            r#"{"Event":{"System":{"EventID":1},"EventData":{"Image":"a.exe","CommandLine":"a -x","User":"u","Other":[1,2]}},"top":true}"#,
        );
        let projection = Projection::new([
            "Event.EventData.Image",
            "Event.EventData.User",
            "Event.System",
            "missing.path",
        ]);
        let mut out = Vec::new();
        assert!(projection.project(&event, &mut out));
        let projected = EventRef::new(&out).expect("object");
        assert_eq!(
            projected.to_json(),
            r#"{"Event":{"System":{"EventID":1},"EventData":{"Image":"a.exe","User":"u"}}}"#
        );
    }

    #[test]
    fn an_empty_projection_keeps_an_empty_object_and_garbage_is_refused() {
        let event = encode(r#"{"a":{"b":1}}"#);
        let mut out = Vec::new();
        assert!(Projection::new(Vec::<String>::new()).project(&event, &mut out));
        assert_eq!(EventRef::new(&out).expect("object").to_json(), "{}");
        let mut out = vec![1, 2];
        assert!(!Projection::new(["a"]).project(&event[..event.len() - 1], &mut out));
        assert_eq!(out, vec![1, 2]);
    }

    #[test]
    fn a_duplicated_key_projects_its_first_entry_like_readers_see_it() {
        let event = encode(r#"{"a":{"x":1},"b":2,"a":{"x":9,"y":3},"c":4}"#);
        let projection = Projection::new(["a.x", "a.y", "c"]);
        let mut out = Vec::new();
        assert!(projection.project(&event, &mut out));
        let projected = EventRef::new(&out).expect("object");
        assert_eq!(projected.to_json(), r#"{"a":{"x":1},"c":4}"#);
        let original = EventRef::new(&event).expect("object");
        for path in ["a.x", "a.y", "c"] {
            assert_eq!(projected.get(path), original.get(path), "{path}");
        }
    }
    #[test]
    fn long_keys_match_exactly() {
        let (a, b) = ("k".repeat(70), "k".repeat(100));
        let event = encode(&format!(r#"{{"{b}":1,"{a}":2,"short":3}}"#));
        let mut out = Vec::new();
        assert!(Projection::new([a.as_str()]).project(&event, &mut out));
        assert_eq!(
            EventRef::new(&out).expect("object").to_json(),
            format!(r#"{{"{a}":2}}"#)
        );
    }
}
