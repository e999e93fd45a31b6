//! Zero-copy reader for the Vigil event encoding.
//!
//! Every accessor is total: bytes that do not follow the format read as
//! "absent" rather than panicking, because a plugin must never trap on input.

use crate::tag;

/// One decoded value. Strings, lists and objects borrow from the event bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// JSON `null`.
    Null,
    /// JSON `true` / `false`.
    Bool(bool),
    /// An integer that fits in `i64`.
    Int(i64),
    /// An integer above `i64::MAX`.
    UInt(u64),
    /// A number with a fraction or exponent.
    Float(f64),
    /// A string.
    Str(&'a str),
    /// A list of values.
    List(ListRef<'a>),
    /// An object of key/value entries, in source order.
    Object(ObjectRef<'a>),
}

impl<'a> Value<'a> {
    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number as `i64`, if this is an integer (or a string holding one,
    /// as Windows event renderers often produce).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(i) => Some(i),
            Value::UInt(u) => i64::try_from(u).ok(),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The number as `f64`, if this is any kind of number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Int(i) => Some(i as f64),
            Value::UInt(u) => Some(u as f64),
            Value::Float(f) => Some(f),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The list, if this is one.
    pub fn as_list(&self) -> Option<ListRef<'a>> {
        match *self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The object, if this is one.
    pub fn as_object(&self) -> Option<ObjectRef<'a>> {
        match *self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// Follow a dotted path (`Event.EventData.Image`, `tags.0`) from here.
    /// Numeric segments index lists. Keys that themselves contain dots are
    /// reached with [`Value::get_path`].
    ///
    /// Hot path for every plugin. An object's keys are compared with the
    /// front of the path directly, so the path is never split or scanned for
    /// dots (in Wasm that scan cost more than the lookups themselves).
    pub fn get(&self, dotted: &str) -> Option<Value<'a>> {
        // The walk stays on raw bytes and decodes a `Value` only at the end:
        // in Wasm a `Value` is returned through the shadow stack, and copying
        // it back out on every level stalled on store forwarding.
        let (mut tag, mut count, mut body) = match *self {
            Value::Object(o) => (tag::OBJECT, o.count, o.entries),
            Value::List(l) => (tag::LIST, l.count, l.items),
            _ => return None,
        };
        let mut path = dotted.as_bytes();
        loop {
            let (value, rest) = if tag == tag::OBJECT {
                entry_at_front(count, body, path)?
            } else {
                let end = path.iter().position(|&b| b == b'.');
                let index = list_index(&path[..end.unwrap_or(path.len())])?;
                (
                    item_at(count, body, index)?,
                    end.map(|dot| &path[dot + 1..]),
                )
            };
            let Some(rest) = rest else {
                return read_value(value).map(|(v, _)| v);
            };
            (tag, count, body) = container(value)?;
            path = rest;
        }
    }

    /// Follow a path given as separate segments.
    pub fn get_path(&self, segments: &[&str]) -> Option<Value<'a>> {
        let mut current = *self;
        for segment in segments {
            current = current.child(segment.as_bytes())?;
        }
        Some(current)
    }

    /// The entry `segment` of an object, or the item at index `segment` of a list.
    fn child(&self, segment: &[u8]) -> Option<Value<'a>> {
        match self {
            Value::Object(o) => o.get_bytes(segment),
            Value::List(l) => l.get(list_index(segment)?),
            _ => None,
        }
    }

    /// Render as a display string: strings as-is, scalars in JSON form,
    /// containers as JSON text.
    pub fn to_text(&self) -> String {
        match self {
            Value::Str(s) => (*s).to_owned(),
            other => {
                let mut out = String::new();
                other.write_json(&mut out);
                out
            }
        }
    }

    /// Append this value as JSON text to `out`.
    pub fn write_json(&self, out: &mut String) {
        use core::fmt::Write;
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::UInt(u) => {
                let _ = write!(out, "{u}");
            }
            Value::Float(f) if f.is_finite() => {
                let _ = write!(out, "{f:?}");
            }
            Value::Float(_) => out.push_str("null"),
            Value::Str(s) => write_json_string(s, out),
            Value::List(l) => {
                out.push('[');
                for (i, item) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            Value::Object(o) => {
                out.push('{');
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_string(k, out);
                    out.push(':');
                    v.write_json(out);
                }
                out.push('}');
            }
        }
    }
}

fn write_json_string(s: &str, out: &mut String) {
    use core::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A borrowed list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ListRef<'a> {
    count: u32,
    items: &'a [u8],
}

impl<'a> ListRef<'a> {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the list has no items.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The item at `index`.
    pub fn get(&self, index: usize) -> Option<Value<'a>> {
        self.iter().nth(index)
    }

    /// The items in order.
    pub fn iter(&self) -> impl Iterator<Item = Value<'a>> + 'a {
        let mut rest = self.items;
        let mut left = self.count;
        core::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            left -= 1;
            let (value, after) = read_value(rest)?;
            rest = after;
            Some(value)
        })
    }
}

/// A borrowed object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObjectRef<'a> {
    count: u32,
    entries: &'a [u8],
}

impl<'a> ObjectRef<'a> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the object has no entries.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The value of the first entry whose key is exactly `key`.
    ///
    /// Hot path: keys are compared as bytes and non-matching values are
    /// skipped by their encoded size without being decoded.
    pub fn get(&self, key: &str) -> Option<Value<'a>> {
        self.get_bytes(key.as_bytes())
    }

    fn get_bytes(&self, wanted: &[u8]) -> Option<Value<'a>> {
        let mut rest = self.entries;
        for _ in 0..self.count {
            let (k, after_key) = read_key(rest)?;
            if k.len() == wanted.len() && equal_bytes(k, wanted, false) {
                return read_value(after_key).map(|(v, _)| v);
            }
            rest = skip_value(after_key)?;
        }
        None
    }

    /// The entries in source order. Entries whose key is not UTF-8 are skipped.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Value<'a>)> + 'a {
        let mut rest = self.entries;
        let mut left = self.count;
        core::iter::from_fn(move || {
            while left > 0 {
                left -= 1;
                let (k, after_key) = read_key(rest)?;
                let (v, after) = read_value(after_key)?;
                rest = after;
                if let Ok(k) = core::str::from_utf8(k) {
                    return Some((k, v));
                }
            }
            None
        })
    }
}

/// One encoded event: always an object at the root.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventRef<'a> {
    root: ObjectRef<'a>,
}

impl<'a> EventRef<'a> {
    /// Read an encoded event. Returns `None` unless `bytes` holds exactly one
    /// object value.
    pub fn new(bytes: &'a [u8]) -> Option<Self> {
        match read_value(bytes)? {
            (Value::Object(root), []) => Some(EventRef { root }),
            _ => None,
        }
    }

    /// The value at a dotted path, e.g. `Event.EventData.CommandLine`.
    pub fn get(&self, dotted: &str) -> Option<Value<'a>> {
        Value::Object(self.root).get(dotted)
    }

    /// The string at a dotted path; `None` when absent or not a string.
    pub fn str(&self, dotted: &str) -> Option<&'a str> {
        self.get(dotted)?.as_str()
    }

    /// The integer at a dotted path (also accepts a string holding a number).
    pub fn i64(&self, dotted: &str) -> Option<i64> {
        self.get(dotted)?.as_i64()
    }

    /// The root object.
    pub fn root(&self) -> ObjectRef<'a> {
        self.root
    }

    /// The whole event as JSON text.
    pub fn to_json(&self) -> String {
        Value::Object(self.root).to_text()
    }
}

fn split(bytes: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (bytes.len() >= n).then(|| bytes.split_at(n))
}

fn read_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = split(bytes, 4)?;
    Some((u32::from_le_bytes(head.try_into().ok()?), rest))
}

fn read_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = split(bytes, 8)?;
    Some((u64::from_le_bytes(head.try_into().ok()?), rest))
}

/// In an object's `entries`, the entry whose key is the first segment of the
/// dotted `path`: its encoded value (and what follows it), and the rest of the
/// path after the segment's dot (`None` when the key was the last segment).
/// Same answer as splitting the path at every dot: a key that contains a dot
/// never matches. The path is not scanned for dots first; each key is
/// compared with the front of the path directly.
#[inline(always)]
fn entry_at_front<'a, 'p>(
    count: u32,
    entries: &'a [u8],
    path: &'p [u8],
) -> Option<(&'a [u8], Option<&'p [u8]>)> {
    let mut rest = entries;
    for _ in 0..count {
        let (k, after_key) = read_key(rest)?;
        let n = k.len();
        // Cheap check first: the key must end where the segment does.
        let ends_segment = path.len() == n || path.get(n) == Some(&b'.');
        if ends_segment && equal_bytes(k, &path[..n], true) {
            return Some((after_key, path.get(n + 1..).filter(|_| path.len() > n)));
        }
        rest = skip_value(after_key)?;
    }
    None
}

/// A path segment read as a list index (`0`, `12`).
fn list_index(segment: &[u8]) -> Option<usize> {
    core::str::from_utf8(segment).ok()?.parse().ok()
}

/// In a list's `items`, the encoded item at `index` (and what follows it).
fn item_at(count: u32, items: &[u8], index: usize) -> Option<&[u8]> {
    if index >= count as usize {
        return None;
    }
    let mut rest = items;
    for _ in 0..index {
        rest = skip_value(rest)?;
    }
    Some(rest)
}

/// The tag, count and body of the list or object at the start of `bytes`.
#[inline]
fn container(bytes: &[u8]) -> Option<(u8, u32, &[u8])> {
    let (&t, rest) = bytes.split_first()?;
    if t != tag::OBJECT && t != tag::LIST {
        return None;
    }
    let (count, rest) = read_u32(rest)?;
    let (size, rest) = read_u32(rest)?;
    Some((t, count, split(rest, size as usize)?.0))
}

/// Whether `a` and `b` (of equal length) hold the same bytes, and, with
/// `no_dot`, none of them is `.`.
///
/// Compares up to eight bytes per step. In Wasm a byte loop is slow: every
/// iteration also pays wasmtime's epoch check (a load and a compare), and
/// `memcmp` is an out-of-line byte loop too. Keys are short, so most take
/// one step.
#[inline]
fn equal_bytes(a: &[u8], b: &[u8], no_dot: bool) -> bool {
    debug_assert_eq!(a.len(), b.len());
    let (mut a, mut b) = (a, b);
    while a.len() >= 8 {
        let (x, y) = (word(a), word(b));
        if x != y || (no_dot && has_dot(x)) {
            return false;
        }
        (a, b) = (&a[8..], &b[8..]);
    }
    let (x, y) = (short_word(a), short_word(b));
    x == y && !(no_dot && has_dot(x))
}

/// The first eight bytes of `bytes` (at least eight long).
#[inline]
fn word(bytes: &[u8]) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(w)
}

/// Fewer than eight bytes packed into a word so that two slices of the same
/// length pack equal exactly when their bytes are equal, and every byte of
/// the slice appears in the word (zeros elsewhere). Overlapping reads keep
/// it loop-free.
#[inline]
fn short_word(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    match n {
        0 => 0,
        1..=3 => u64::from(bytes[0]) | u64::from(bytes[n / 2]) << 8 | u64::from(bytes[n - 1]) << 16,
        _ => {
            let lo = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            let hi = u32::from_le_bytes([bytes[n - 4], bytes[n - 3], bytes[n - 2], bytes[n - 1]]);
            u64::from(lo) | u64::from(hi) << 32
        }
    }
}

/// Whether any byte of `w` is `.` (the classic has-zero-byte test on `w`
/// xor dots; zero padding is never mistaken for a dot).
#[inline]
fn has_dot(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let x = w ^ (ONES * u64::from(b'.'));
    x.wrapping_sub(ONES) & !x & HIGHS != 0
}

#[inline]
fn read_key(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = split(bytes, 2)?;
    let len = u16::from_le_bytes(len.try_into().ok()?) as usize;
    split(rest, len)
}

/// Encoded length of the value at the start of `bytes`.
pub(crate) fn value_len(bytes: &[u8]) -> Option<usize> {
    skip_value(bytes).map(|rest| bytes.len() - rest.len())
}

/// Skip one value without decoding it; returns the bytes after it.
#[inline]
fn skip_value(bytes: &[u8]) -> Option<&[u8]> {
    let (&t, rest) = bytes.split_first()?;
    let skip = match t {
        tag::NULL | tag::FALSE | tag::TRUE => 0,
        tag::INT | tag::FLOAT | tag::UINT => 8,
        tag::STRING => {
            let (len, rest) = read_u32(rest)?;
            return split(rest, len as usize).map(|(_, after)| after);
        }
        tag::LIST | tag::OBJECT => {
            let (_count, rest) = read_u32(rest)?;
            let (size, rest) = read_u32(rest)?;
            return split(rest, size as usize).map(|(_, after)| after);
        }
        _ => return None,
    };
    split(rest, skip).map(|(_, after)| after)
}

/// Decode one value; returns it and the bytes after it.
#[inline]
fn read_value(bytes: &[u8]) -> Option<(Value<'_>, &[u8])> {
    let (&t, rest) = bytes.split_first()?;
    Some(match t {
        tag::NULL => (Value::Null, rest),
        tag::FALSE => (Value::Bool(false), rest),
        tag::TRUE => (Value::Bool(true), rest),
        tag::INT => {
            let (v, rest) = read_u64(rest)?;
            (Value::Int(v as i64), rest)
        }
        tag::UINT => {
            let (v, rest) = read_u64(rest)?;
            (Value::UInt(v), rest)
        }
        tag::FLOAT => {
            let (v, rest) = read_u64(rest)?;
            (Value::Float(f64::from_bits(v)), rest)
        }
        tag::STRING => {
            let (len, rest) = read_u32(rest)?;
            let (s, rest) = split(rest, len as usize)?;
            (Value::Str(core::str::from_utf8(s).ok()?), rest)
        }
        tag::LIST => {
            let (count, rest) = read_u32(rest)?;
            let (size, rest) = read_u32(rest)?;
            let (items, rest) = split(rest, size as usize)?;
            (Value::List(ListRef { count, items }), rest)
        }
        tag::OBJECT => {
            let (count, rest) = read_u32(rest)?;
            let (size, rest) = read_u32(rest)?;
            let (entries, rest) = split(rest, size as usize)?;
            (Value::Object(ObjectRef { count, entries }), rest)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_or_garbage_bytes_read_as_absent_instead_of_panicking() {
        assert!(EventRef::new(&[]).is_none());
        assert!(EventRef::new(&[tag::OBJECT, 1, 0, 0, 0, 200, 0, 0, 0]).is_none());
        assert!(EventRef::new(&[0xff]).is_none());
        // An object claiming one entry whose key runs past the end.
        let bytes = [tag::OBJECT, 1, 0, 0, 0, 3, 0, 0, 0, 9, 0, b'a'];
        let event = EventRef::new(&bytes).expect("sizes are consistent");
        assert_eq!(event.get("a"), None);
        assert_eq!(event.root().iter().count(), 0);
    }

    #[test]
    fn word_compare_agrees_with_byte_compare_at_every_length() {
        let base = b"EventData.CommandLine.x";
        for len in 0..=base.len() {
            let a = &base[..len];
            assert!(equal_bytes(a, a, false), "len {len}");
            assert_eq!(equal_bytes(a, a, true), !a.contains(&b'.'), "len {len}");
            for i in 0..len {
                let mut b = a.to_vec();
                b[i] ^= 0x20;
                assert!(!equal_bytes(a, &b, false), "len {len}, byte {i}");
            }
        }
        for w in [0u64, 0x2e, 0x2e00_0000_0000_0000, 0x2d2f_2d2f_2d2f_2d2f] {
            assert_eq!(has_dot(w), w.to_le_bytes().contains(&b'.'), "{w:#x}");
        }
    }
}
