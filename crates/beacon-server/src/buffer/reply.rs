//! Stream replies parsed straight from the protocol's values: an entry's
//! id and the two fields Beacon writes, nothing copied into maps.

use redis::Value;

/// An entry as read: its id and its `v` and `e` fields.
#[derive(Debug, Default)]
pub(super) struct RawEntry {
    pub id: String,
    pub version: Option<Vec<u8>>,
    pub event: Option<Vec<u8>>,
}

fn text(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

/// One `[id, [field, value, …]]`; `None` for the nil an entry deleted
/// meanwhile leaves.
fn entry(v: Value) -> Option<RawEntry> {
    let Value::Array(parts) = v else { return None };
    let mut parts = parts.into_iter();
    let id = text(parts.next()?)?;
    let mut out = RawEntry {
        id,
        ..RawEntry::default()
    };
    if let Some(Value::Array(fields)) = parts.next() {
        let mut fields = fields.into_iter();
        while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
            match bytes(name).as_deref() {
                Some(b"v") => out.version = bytes(value),
                Some(b"e") => out.event = bytes(value),
                _ => {}
            }
        }
    }
    Some(out)
}

/// A list of entries.
fn entries(v: Value) -> Vec<RawEntry> {
    match v {
        Value::Array(items) => items.into_iter().filter_map(entry).collect(),
        _ => vec![],
    }
}

/// The entries of an `XREAD`/`XREADGROUP` reply on one stream (nil when
/// the block timed out).
pub(super) fn read(v: Value) -> Vec<RawEntry> {
    let streams = match v {
        Value::Array(streams) => streams,
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(k, v)| Value::Array(vec![k, v]))
            .collect(),
        _ => return vec![],
    };
    streams
        .into_iter()
        .flat_map(|stream| match stream {
            Value::Array(kv) => kv.into_iter().nth(1).map(entries).unwrap_or_default(),
            _ => vec![],
        })
        .collect()
}

/// The next cursor and the claimed entries of an `XAUTOCLAIM` reply.
pub(super) fn autoclaim(v: Value) -> (String, Vec<RawEntry>) {
    let Value::Array(parts) = v else {
        return ("0-0".into(), vec![]);
    };
    let mut parts = parts.into_iter();
    let cursor = parts.next().and_then(text).unwrap_or_else(|| "0-0".into());
    (cursor, parts.next().map(entries).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn raw(id: &str, fields: &[(&str, &str)]) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(
                fields
                    .iter()
                    .flat_map(|(k, v)| [bulk(k), bulk(v)])
                    .collect(),
            ),
        ])
    }

    #[test]
    fn read_replies_give_each_entry_with_its_two_fields() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("beacon:events"),
            Value::Array(vec![
                raw("1-0", &[("v", "1"), ("e", "{}")]),
                raw("1-1", &[("other", "x"), ("v", "2")]),
            ]),
        ])]);
        let got = read(reply);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, "1-0");
        assert_eq!(got[0].version.as_deref(), Some(&b"1"[..]));
        assert_eq!(got[0].event.as_deref(), Some(&b"{}"[..]));
        assert_eq!(got[1].event, None);
        assert!(read(Value::Nil).is_empty(), "a block that timed out");
    }

    #[test]
    fn autoclaim_replies_skip_entries_deleted_meanwhile() {
        let reply = Value::Array(vec![
            bulk("5-0"),
            Value::Array(vec![raw("2-0", &[("v", "1"), ("e", "{}")]), Value::Nil]),
            Value::Array(vec![bulk("3-0")]),
        ]);
        let (cursor, got) = autoclaim(reply);
        assert_eq!(cursor, "5-0");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, "2-0");
    }
}
