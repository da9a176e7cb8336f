//! Redis's replies to the node's commands, read into the node's types (`broker`).

use redis::Value;

/// One entry read from the log.
#[derive(Debug)]
pub(crate) struct RawEntry {
    /// Its stream id.
    pub id: String,
    /// `o`: the publishing node and batch.
    pub origin: Option<Vec<u8>>,
    /// `e`: the event.
    pub event: Option<Vec<u8>>,
    /// `gap`: a gap marker, with the epoch it started.
    pub gap: bool,
}

/// What `XINFO STREAM` says about the log.
#[derive(Debug, Default, Clone)]
pub(crate) struct LogInfo {
    pub last_generated: String,
    pub max_deleted: String,
    pub first: String,
    pub length: u64,
    pub added: u64,
}

pub(super) fn split_ids(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A string reply.
pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The entries of an `XRANGE` reply (`[[id, [field, value, ...]], ...]`), taking the
/// field values out of the reply (no copy).
pub(crate) fn entries(v: Value) -> Vec<RawEntry> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let Value::Array(pair) = item else {
                return None;
            };
            let mut pair = pair.into_iter();
            let id = text(&pair.next()?)?;
            let mut entry = RawEntry {
                id,
                origin: None,
                event: None,
                gap: false,
            };
            if let Some(Value::Array(fields)) = pair.next() {
                let mut fields = fields.into_iter();
                while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
                    let (Value::BulkString(k), Value::BulkString(v)) = (k, v) else {
                        continue;
                    };
                    match k.as_slice() {
                        b"o" => entry.origin = Some(v),
                        b"e" => entry.event = Some(v),
                        b"gap" => entry.gap = true,
                        _ => {}
                    }
                }
            }
            Some(entry)
        })
        .collect()
}

/// The entries of an `XREAD` reply for one stream (`[[key, [entries]]]`), or none (timeout).
pub(crate) fn read_entries(v: Value) -> Vec<RawEntry> {
    match v {
        Value::Array(streams) => streams
            .into_iter()
            .next()
            .and_then(|s| match s {
                Value::Array(pair) => pair.into_iter().nth(1).map(entries),
                _ => None,
            })
            .unwrap_or_default(),
        Value::Map(map) => map
            .into_iter()
            .next()
            .map(|(_, e)| entries(e))
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}
