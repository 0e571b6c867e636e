//! One case of the hostile input table: how it reaches the server, what the
//! answer must be, and which of its events must (or must not) be stored;
//! with the builders and row checks that the categories share.

use beacon_store::StoredEvent;
use serde_json::{json, Value};

/// Every valid event of the table belongs to this session.
pub const SESSION: &str = "hostile";

/// A check of one stored row; `Err` says what is wrong.
pub type Check = Box<dyn Fn(&StoredEvent) -> Result<(), String> + Send + Sync>;

/// How a case reaches the server.
pub enum Request {
    /// `POST /track` through reqwest, `Content-Type: application/json`, with
    /// extra headers.
    Post {
        headers: Vec<(&'static str, &'static str)>,
        body: Vec<u8>,
    },
    /// A request with another method.
    Method(reqwest::Method),
    /// Bytes written as they are on a new TCP connection; then the response
    /// is read, and `then` says what must become of the connection.
    Raw { bytes: Vec<u8>, then: Then },
}

/// The connection after a raw exchange.
pub enum Then {
    /// The response says `Connection: close` and the server closes the
    /// connection (the client reconnects for its next request; a follow-up
    /// request on a new connection must succeed).
    Closed,
    /// `rest` is written (the end of a body the server stopped reading),
    /// then a valid request on the same connection must get its 200.
    Reused { rest: Vec<u8> },
}

/// What the response must be.
pub enum Expect {
    /// 200; the rejected events are listed as `(index, code)`.
    Accepted(Vec<(usize, &'static str)>),
    /// An error status with a JSON error code.
    Error(u16, &'static str),
    /// An error status from the HTTP layer, before any handler: no JSON.
    Status(u16),
}

/// One hostile request and what must come of it.
pub struct Case {
    pub name: String,
    pub send: Request,
    pub expect: Expect,
    /// Valid events of the request: each must be stored exactly once.
    pub stored: Vec<(String, Check)>,
    /// Events of the request that must not be stored.
    pub refused: Vec<String>,
}

pub fn ok(_: &StoredEvent) -> Result<(), String> {
    Ok(())
}

pub fn id(case: &str, what: &str) -> String {
    format!("{case}/{what}")
}

/// A valid event.
pub fn valid(id: &str) -> String {
    json!({"type": "visit", "sessionId": SESSION, "id": id, "url": "https://site.example/"})
        .to_string()
}

pub fn batch(events: &[String]) -> Vec<u8> {
    format!("{{\"batch\":[{}]}}", events.join(",")).into_bytes()
}

pub fn post(body: impl Into<Vec<u8>>) -> Request {
    Request::Post {
        headers: vec![],
        body: body.into(),
    }
}

/// A body refused as a whole: the valid event inside must not be stored.
pub fn refused(name: &str, body: impl Into<Vec<u8>>, status: u16, code: &'static str) -> Case {
    Case {
        name: name.into(),
        send: post(body),
        expect: Expect::Error(status, code),
        stored: vec![],
        refused: vec![id(name, "ok")],
    }
}

/// A batch of a valid event and a bad one (`bad` is the bad event's JSON,
/// given the id it should carry): 200, the valid one stored, the bad one
/// rejected with `code`.
pub fn bad_event(name: &str, bad: impl Fn(&str) -> String, code: &'static str) -> Case {
    let good = id(name, "ok");
    let bad_id = id(name, "bad");
    Case {
        name: name.into(),
        send: post(batch(&[valid(&good), bad(&bad_id)])),
        expect: Expect::Accepted(vec![(1, code)]),
        stored: vec![(good, Box::new(ok))],
        refused: vec![bad_id],
    }
}

/// A batch of a valid event and an odd but acceptable one, whose stored row
/// must pass `check`.
pub fn odd_event(name: &str, odd: impl Fn(&str) -> String, check: Check) -> Case {
    let good = id(name, "ok");
    let odd_id = id(name, "odd");
    Case {
        name: name.into(),
        send: post(batch(&[valid(&good), odd(&odd_id)])),
        expect: Expect::Accepted(vec![]),
        stored: vec![(good, Box::new(ok)), (odd_id, check)],
        refused: vec![],
    }
}

/// An event of the session with extra raw JSON fields (`fields` starts
/// with a comma).
pub fn event_with(id: &str, fields: &str) -> String {
    format!(r#"{{"type":"visit","sessionId":"{SESSION}","id":"{id}"{fields}}}"#)
}

pub fn raw_post(headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = String::from("POST /track HTTP/1.1\r\nHost: beacon.test\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// The head of a POST declaring `length` bytes, and only `start` of its
/// body: the rest is never sent.
pub fn declared_but_partial(extra: &[(&str, &str)], length: usize, start: &[u8]) -> Vec<u8> {
    let length = length.to_string();
    let mut headers = vec![("Content-Length", length.as_str())];
    headers.extend_from_slice(extra);
    raw_post(&headers, start)
}

/// A POST sent whole with its `Content-Length`, on a connection that must
/// then carry the next request.
pub fn whole_then_reused(extra: &[(&str, &str)], body: &[u8]) -> Request {
    let length = body.len().to_string();
    let mut headers = vec![("Content-Length", length.as_str())];
    headers.extend_from_slice(extra);
    Request::Raw {
        bytes: raw_post(&headers, body),
        then: Then::Reused { rest: vec![] },
    }
}

pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// A valid event padded with an ignored field to `size` bytes.
pub fn padded(id: &str, size: usize) -> Vec<u8> {
    let head = format!(r#"{{"type":"visit","sessionId":"{SESSION}","id":"{id}","pad":""#);
    let tail = r#""}"#;
    format!("{head}{}{tail}", "p".repeat(size - head.len() - tail.len())).into_bytes()
}

/// `len` letters and digits that do not compress (a database may compress
/// a repetitive string below a size limit it would otherwise hit).
pub fn incompressible(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            // xorshift64: deterministic, and random enough for a compressor.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(ALPHABET[(state % ALPHABET.len() as u64) as usize])
        })
        .collect()
}

/// A JSON value nested `depth` levels: `{"a":{"a":…1…}}`.
pub fn nested_objects(depth: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

pub fn check_occurred_at_is_receive_time(row: &StoredEvent) -> Result<(), String> {
    if row.occurred_at_us == row.received_at_us {
        Ok(())
    } else {
        Err(format!(
            "event time {} should be the receive time {}",
            row.occurred_at(),
            row.received_at()
        ))
    }
}

pub fn no_control_characters(row: &StoredEvent) -> Result<(), String> {
    let fields = [
        ("type", Some(row.kind.as_str())),
        ("url", row.url.as_deref()),
        ("referrer", row.referrer.as_deref()),
        ("user agent", row.user_agent.as_deref()),
        ("label", row.label.as_deref()),
    ];
    for (field, value) in fields {
        if value.is_some_and(|v| v.chars().any(char::is_control)) {
            return Err(format!("{field} {value:?} holds a control character"));
        }
    }
    let data: Value = serde_json::from_str(&row.metadata).map_err(|e| e.to_string())?;
    let mut strings = vec![&data];
    while let Some(v) = strings.pop() {
        match v {
            Value::String(s) if s.contains('\0') => return Err(format!("NUL in data: {s:?}")),
            Value::Object(m) => {
                if let Some(k) = m.keys().find(|k| k.contains('\0')) {
                    return Err(format!("NUL in a data key: {k:?}"));
                }
                strings.extend(m.values());
            }
            Value::Array(a) => strings.extend(a),
            _ => {}
        }
    }
    Ok(())
}

pub fn expect_fields(expected: Vec<(&'static str, Option<&'static str>)>) -> Check {
    Box::new(move |row| {
        for (field, want) in &expected {
            let got = match *field {
                "type" => Some(row.kind.as_str()),
                "url" => row.url.as_deref(),
                "referrer" => row.referrer.as_deref(),
                "user_agent" => row.user_agent.as_deref(),
                "label" => row.label.as_deref(),
                "metadata" => Some(row.metadata.as_str()),
                other => return Err(format!("no field {other}")),
            };
            if got != *want {
                return Err(format!("{field}: expected {want:?}, stored {got:?}"));
            }
        }
        Ok(())
    })
}
