//! JSON text to the Vigil event encoding, in one streaming pass.
//!
//! The encoder drives `serde_json`'s deserializer directly and writes tags as
//! values arrive, so no intermediate `serde_json::Value` tree is built: the
//! host pays one parse per event, however many plugins read it.

use core::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::tag;

/// Why a JSON text could not be encoded as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// The text is not valid JSON; the message carries serde_json's column.
    Json(String),
    /// The text is valid JSON but not an object.
    NotAnObject,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::Json(msg) => write!(f, "invalid JSON: {msg}"),
            EncodeError::NotAnObject => f.write_str("an event must be a JSON object"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// Append the encoding of the JSON object in `json` to `out`.
///
/// On error `out` is left as it was. Nesting deeper than serde_json's
/// recursion limit (128) is rejected as invalid JSON.
pub fn encode_json(json: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    let mut de = serde_json::Deserializer::from_slice(json);
    let result = ValueSeed { out }
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| EncodeError::Json(e.to_string()));
    let result = result.and_then(|()| match out.get(start) {
        Some(&tag::OBJECT) => Ok(()),
        _ => Err(EncodeError::NotAnObject),
    });
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Writes one value of any type.
struct ValueSeed<'o> {
    out: &'o mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// Reserve the `count` and `size` words of a container; returns their position.
fn open_container(out: &mut Vec<u8>, t: u8) -> usize {
    out.push(t);
    let at = out.len();
    out.extend_from_slice(&[0; 8]);
    at
}

fn close_container<E: de::Error>(out: &mut [u8], at: usize, count: u32) -> Result<(), E> {
    let size =
        u32::try_from(out.len() - at - 8).map_err(|_| E::custom("container larger than 4 GiB"))?;
    out[at..at + 4].copy_from_slice(&count.to_le_bytes());
    out[at + 4..at + 8].copy_from_slice(&size.to_le_bytes());
    Ok(())
}

fn write_str<E: de::Error>(out: &mut Vec<u8>, s: &str) -> Result<(), E> {
    let len = u32::try_from(s.len()).map_err(|_| E::custom("string larger than 4 GiB"))?;
    out.push(tag::STRING);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.out.push(tag::NULL);
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.out.push(if v { tag::TRUE } else { tag::FALSE });
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.out.push(tag::INT);
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        match i64::try_from(v) {
            Ok(i) => self.visit_i64(i),
            Err(_) => {
                self.out.push(tag::UINT);
                self.out.extend_from_slice(&v.to_le_bytes());
                Ok(())
            }
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.out.push(tag::FLOAT);
        self.out.extend_from_slice(&v.to_bits().to_le_bytes());
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        write_str(self.out, v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let at = open_container(self.out, tag::LIST);
        let mut count = 0u32;
        while seq
            .next_element_seed(ValueSeed { out: self.out })?
            .is_some()
        {
            count += 1;
        }
        close_container(self.out, at, count)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let at = open_container(self.out, tag::OBJECT);
        let mut count = 0u32;
        while map.next_key_seed(KeySeed { out: self.out })?.is_some() {
            map.next_value_seed(ValueSeed { out: self.out })?;
            count += 1;
        }
        close_container(self.out, at, count)
    }
}

/// Writes one object key (`u16` length, then bytes).
struct KeySeed<'o> {
    out: &'o mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        let len =
            u16::try_from(v.len()).map_err(|_| E::custom("object key longer than 65535 bytes"))?;
        self.out.extend_from_slice(&len.to_le_bytes());
        self.out.extend_from_slice(v.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventRef, Value};

    fn encode(json: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode_json(json.as_bytes(), &mut out).expect("valid event");
        out
    }

    #[test]
    fn nested_values_round_trip_through_paths() {
        let bytes = encode(
            r#"{"Event":{"System":{"EventID":4625,"Big":18446744073709551615},
                "EventData":{"User":"CORP\\alice","Ok":true,"Ratio":0.5,"Nothing":null}},
                "tags":["a",{"k":"v"}]}"#,
        );
        let event = EventRef::new(&bytes).expect("object");
        assert_eq!(event.i64("Event.System.EventID"), Some(4625));
        assert_eq!(event.get("Event.System.Big"), Some(Value::UInt(u64::MAX)));
        assert_eq!(event.str("Event.EventData.User"), Some("CORP\\alice"));
        assert_eq!(event.get("Event.EventData.Ok"), Some(Value::Bool(true)));
        assert_eq!(event.get("Event.EventData.Ratio"), Some(Value::Float(0.5)));
        assert_eq!(event.get("Event.EventData.Nothing"), Some(Value::Null));
        assert_eq!(event.str("tags.0"), Some("a"));
        assert_eq!(event.str("tags.1.k"), Some("v"));
        assert_eq!(event.get("tags.2"), None);
        assert_eq!(event.get("Event.Missing"), None);
    }

    #[test]
    fn event_renders_back_to_equivalent_json() {
        let json = r#"{"a":[1,-2,3.25,"x\"y\n"],"b":{"c":false,"d":null},"e":"ü"}"#;
        let bytes = encode(json);
        let back = EventRef::new(&bytes).expect("object").to_json();
        let original: serde_json::Value = serde_json::from_str(json).expect("json");
        let rendered: serde_json::Value = serde_json::from_str(&back).expect("json");
        assert_eq!(original, rendered);
    }

    #[test]
    fn non_objects_and_bad_json_are_rejected_and_leave_output_untouched() {
        let mut out = vec![9, 9];
        assert_eq!(
            encode_json(b"[1,2]", &mut out),
            Err(EncodeError::NotAnObject)
        );
        assert!(matches!(
            encode_json(b"{\"a\":", &mut out),
            Err(EncodeError::Json(_))
        ));
        assert!(matches!(
            encode_json(b"{} trailing", &mut out),
            Err(EncodeError::Json(_))
        ));
        assert_eq!(out, vec![9, 9]);
    }

    #[test]
    fn dotted_keys_are_reachable_by_segments() {
        let bytes = encode(r#"{"winlog.event_data":{"x":1}}"#);
        let event = EventRef::new(&bytes).expect("object");
        assert_eq!(event.get("winlog.event_data.x"), None);
        let root = Value::Object(event.root());
        assert_eq!(
            root.get_path(&["winlog.event_data", "x"]),
            Some(Value::Int(1))
        );
    }

    #[test]
    fn dotted_lookup_answers_exactly_like_splitting_the_path() {
        let bytes = encode(
            r#"{"a":{"b":1,"bc":2,"":{"x":3}},"a.b":9,"ab":{"c":4},"l":[{"k":"v"},5],"":6}"#,
        );
        let event = EventRef::new(&bytes).expect("object");
        let root = Value::Object(event.root());
        for path in [
            "a", "a.b", "a.bc", "a.b.c", "ab.c", "ab", "a.", "a..x", "", ".", "l.0.k", "l.1",
            "l.2", "l.x", "l.0.k.z", "a.b.", "b", "abc",
        ] {
            let segments: Vec<&str> = path.split('.').collect();
            assert_eq!(event.get(path), root.get_path(&segments), "path {path:?}");
        }
        assert_eq!(event.get("a.bc"), Some(Value::Int(2)));
        assert_eq!(event.get("a..x"), Some(Value::Int(3)));
        assert_eq!(event.get("l.0.k").and_then(|v| v.as_str()), Some("v"));
    }
}
