//! Hostile input, end to end: every case of the hardening list is sent to a
//! running server, and its status, its JSON error and what it stored are
//! checked. Each request that can carry a valid event carries one; at the
//! end the server is still up and exactly the valid events are stored, once.
//!
//! Bodies that reqwest refuses to send (header values with CR/LF, partial
//! bodies, chunked bodies written by hand) go over a raw TCP connection.

use std::collections::HashMap;
use std::time::Duration;

use beacon_store::testing::TestDatabase;
use beacon_store::StoredEvent;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(every_hostile_input_is_answered_and_only_the_valid_events_are_stored);

/// Every valid event of the table belongs to this session.
const SESSION: &str = "hostile";
/// Bound on any one exchange: a case that takes longer has hung.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(30);

/// A check of one stored row; `Err` says what is wrong.
type Check = Box<dyn Fn(&StoredEvent) -> Result<(), String> + Send + Sync>;

/// How a case reaches the server.
enum Request {
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
enum Then {
    /// The response says `Connection: close` and the server closes the
    /// connection (the client reconnects for its next request; a follow-up
    /// request on a new connection must succeed).
    Closed,
    /// `rest` is written (the end of a body the server stopped reading),
    /// then a valid request on the same connection must get its 200.
    Reused { rest: Vec<u8> },
}

/// What the response must be.
enum Expect {
    /// 200; the rejected events are listed as `(index, code)`.
    Accepted(Vec<(usize, &'static str)>),
    /// An error status with a JSON error code.
    Error(u16, &'static str),
    /// An error status from the HTTP layer, before any handler: no JSON.
    Status(u16),
}

struct Case {
    name: String,
    send: Request,
    expect: Expect,
    /// Valid events of the request: each must be stored exactly once.
    stored: Vec<(String, Check)>,
    /// Events of the request that must not be stored.
    refused: Vec<String>,
}

fn ok(_: &StoredEvent) -> Result<(), String> {
    Ok(())
}

fn id(case: &str, what: &str) -> String {
    format!("{case}/{what}")
}

/// A valid event.
fn valid(id: &str) -> String {
    json!({"type": "visit", "sessionId": SESSION, "id": id, "url": "https://site.example/"})
        .to_string()
}

fn batch(events: &[String]) -> Vec<u8> {
    format!("{{\"batch\":[{}]}}", events.join(",")).into_bytes()
}

fn post(body: impl Into<Vec<u8>>) -> Request {
    Request::Post {
        headers: vec![],
        body: body.into(),
    }
}

/// A body refused as a whole: the valid event inside must not be stored.
fn refused(name: &str, body: impl Into<Vec<u8>>, status: u16, code: &'static str) -> Case {
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
fn bad_event(name: &str, bad: impl Fn(&str) -> String, code: &'static str) -> Case {
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
fn odd_event(name: &str, odd: impl Fn(&str) -> String, check: Check) -> Case {
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
fn event_with(id: &str, fields: &str) -> String {
    format!(r#"{{"type":"visit","sessionId":"{SESSION}","id":"{id}"{fields}}}"#)
}

fn raw_post(headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
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
fn declared_but_partial(extra: &[(&str, &str)], length: usize, start: &[u8]) -> Vec<u8> {
    let length = length.to_string();
    let mut headers = vec![("Content-Length", length.as_str())];
    headers.extend_from_slice(extra);
    raw_post(&headers, start)
}

/// A POST sent whole with its `Content-Length`, on a connection that must
/// then carry the next request.
fn whole_then_reused(extra: &[(&str, &str)], body: &[u8]) -> Request {
    let length = body.len().to_string();
    let mut headers = vec![("Content-Length", length.as_str())];
    headers.extend_from_slice(extra);
    Request::Raw {
        bytes: raw_post(&headers, body),
        then: Then::Reused { rest: vec![] },
    }
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// A valid event padded with an ignored field to `size` bytes.
fn padded(id: &str, size: usize) -> Vec<u8> {
    let head = format!(r#"{{"type":"visit","sessionId":"{SESSION}","id":"{id}","pad":""#);
    let tail = r#""}"#;
    format!("{head}{}{tail}", "p".repeat(size - head.len() - tail.len())).into_bytes()
}

/// `len` letters and digits that do not compress (a database may compress
/// a repetitive string below a size limit it would otherwise hit).
fn incompressible(len: usize) -> String {
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
fn nested_objects(depth: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

fn check_occurred_at_is_receive_time(row: &StoredEvent) -> Result<(), String> {
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

fn no_control_characters(row: &StoredEvent) -> Result<(), String> {
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

fn expect_fields(expected: Vec<(&'static str, Option<&'static str>)>) -> Check {
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

// ---- gzip, written by hand: no compression crate for one test ----

const CRC_POLY: u32 = 0xedb8_8320;

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ CRC_POLY
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `a * b` modulo the CRC polynomial (bit-reflected, as in zlib).
fn mul_mod_p(a: u32, mut b: u32) -> u32 {
    let mut m = 1u32 << 31;
    let mut p = 0;
    loop {
        if a & m != 0 {
            p ^= b;
            if a & (m - 1) == 0 {
                return p;
            }
        }
        m >>= 1;
        b = if b & 1 == 1 {
            (b >> 1) ^ CRC_POLY
        } else {
            b >> 1
        };
    }
}

/// CRC-32 of `n` zero bytes, without looping over them: feeding zeros
/// multiplies the register by x^(8n).
fn crc32_of_zeros(n: u64) -> u32 {
    // x^(2^k) for k = 3.. (x^8, x^16, …).
    let mut square = mul_mod_p(1 << 30, 1 << 30); // x^2
    square = mul_mod_p(square, square); // x^4
    square = mul_mod_p(square, square); // x^8
    let mut power = 1u32 << 31; // x^0
    let mut n = n;
    while n != 0 {
        if n & 1 == 1 {
            power = mul_mod_p(square, power);
        }
        square = mul_mod_p(square, square);
        n >>= 1;
    }
    !mul_mod_p(power, !0)
}

fn gzip_frame(deflate: Vec<u8>, crc: u32, size: u64) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.extend(deflate);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(size as u32).to_le_bytes());
    out
}

/// A gzip member holding `data` in one stored (uncompressed) block.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let len = u16::try_from(data.len()).unwrap();
    let mut deflate = vec![1];
    deflate.extend_from_slice(&len.to_le_bytes());
    deflate.extend_from_slice(&(!len).to_le_bytes());
    deflate.extend_from_slice(data);
    gzip_frame(deflate, crc32(data), data.len() as u64)
}

/// A valid gzip member that inflates to `matches * 258 + 1` zero bytes,
/// about 1,000 times its size: one literal zero, then back-references of
/// the longest length (258) at distance 1, each coded in 2 bits by a
/// dynamic Huffman block made for it.
fn gzip_bomb(matches: u64) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        bit: u32,
    }
    impl Bits {
        /// Header fields and extra bits: least significant bit first.
        fn value(&mut self, value: u32, count: u32) {
            for i in 0..count {
                if self.bit.is_multiple_of(8) {
                    self.out.push(0);
                }
                if value >> i & 1 == 1 {
                    *self.out.last_mut().unwrap() |= 1 << (self.bit % 8);
                }
                self.bit += 1;
            }
        }
        /// Huffman codes: most significant bit first.
        fn code(&mut self, code: u32, len: u32) {
            for i in (0..len).rev() {
                self.value(code >> i & 1, 1);
            }
        }
    }
    let mut bits = Bits {
        out: vec![],
        bit: 0,
    };
    bits.value(1, 1); // last block
    bits.value(2, 2); // dynamic Huffman codes
    bits.value(29, 5); // 286 literal/length codes
    bits.value(1, 5); // 2 distance codes
    bits.value(14, 4); // 18 code-length codes, in the order below
                       // Code-length alphabet order: 16 17 18 0 8 7 9 6 10 5 11 4 12 3 13 2 14 1.
                       // Used: 18 (run of zeros) in 1 bit, 1 and 2 in 2 bits.
    for len in [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2] {
        bits.value(len, 3);
    }
    // Canonical codes: 18 -> 0, 1 -> 10, 2 -> 11.
    let zeros = |bits: &mut Bits, n: u32| {
        bits.code(0, 1);
        bits.value(n - 11, 7);
    };
    // Literal/length lengths: 0 -> 2 bits, 256 (end) -> 2, 285 (258) -> 1.
    bits.code(0b11, 2); // symbol 0: length 2
    zeros(&mut bits, 138); // 1..=138
    zeros(&mut bits, 117); // 139..=255
    bits.code(0b11, 2); // 256: length 2
    zeros(&mut bits, 28); // 257..=284
    bits.code(0b10, 2); // 285: length 1
                        // Distance lengths: codes 0 and 1, 1 bit each (a complete code).
    bits.code(0b10, 2);
    bits.code(0b10, 2);
    // Canonical codes: 285 -> 0, literal 0 -> 10, end -> 11; distance 0 -> 0.
    bits.code(0b10, 2); // literal 0
    for _ in 0..matches {
        bits.code(0, 1); // length 258
        bits.code(0, 1); // distance 1
    }
    bits.code(0b11, 2); // end of block
    let size = matches * 258 + 1;
    gzip_frame(bits.out, crc32_of_zeros(size), size)
}

// ---- raw HTTP/1.1 over TCP ----

struct RawResponse {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

struct RawConnection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl RawConnection {
    async fn open(app: &TestApp) -> Self {
        let addr = app.address.trim_start_matches("http://");
        Self {
            stream: TcpStream::connect(addr).await.unwrap(),
            buffer: vec![],
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        tokio::time::timeout(EXCHANGE_LIMIT, self.stream.write_all(bytes))
            .await
            .map_err(|_| "the server stopped reading and the write hung".to_owned())?
            .map_err(|e| format!("write failed: {e}"))
    }

    async fn fill(&mut self) -> Result<usize, String> {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(EXCHANGE_LIMIT, self.stream.read(&mut chunk))
            .await
            .map_err(|_| "no response in time".to_owned())?
            .map_err(|e| format!("read failed: {e}"))?;
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one response (its body by `Content-Length`).
    async fn response(&mut self) -> Result<RawResponse, String> {
        let head_end = loop {
            if let Some(i) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if self.fill().await? == 0 {
                return Err(format!(
                    "connection closed before a complete response: {:?}",
                    String::from_utf8_lossy(&self.buffer)
                ));
            }
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP response: {head:?}"))?;
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .get("content-length")
            .map_or(Ok(0), |v| v.parse())
            .map_err(|e| format!("content-length: {e}"))?;
        while self.buffer.len() < head_end + 4 + length {
            if self.fill().await? == 0 {
                return Err("connection closed in the middle of a response body".into());
            }
        }
        let body = self.buffer[head_end + 4..head_end + 4 + length].to_vec();
        self.buffer.drain(..head_end + 4 + length);
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    /// `Ok` when the server closes the connection without sending more.
    async fn closed_by_server(&mut self) -> Result<(), String> {
        match self.fill().await {
            Ok(0) => Ok(()),
            Ok(_) => Err(format!(
                "unexpected bytes after the response: {:?}",
                String::from_utf8_lossy(&self.buffer)
            )),
            // A reset after the response counts as closed.
            Err(e) if e.starts_with("read failed") => Ok(()),
            Err(e) => Err(format!("the connection was not closed: {e}")),
        }
    }
}

// ---- the table ----

fn cases() -> Vec<Case> {
    let mut cases = vec![];

    // Not JSON, not an object.
    cases.push(refused(
        "truncated JSON",
        format!("{{\"batch\":[{},", valid("truncated JSON/ok")),
        400,
        "invalid_json",
    ));
    cases.push(refused(
        "garbage",
        "<xml>not json</xml>",
        400,
        "invalid_json",
    ));
    cases.push(refused(
        "a raw NUL byte inside a JSON string",
        event_with(
            "a raw NUL byte inside a JSON string/ok",
            ",\"url\":\"a\0b\"",
        ),
        400,
        "invalid_json",
    ));
    cases.push(refused(
        "invalid UTF-8 between tokens",
        [
            b"{\"batch\":[".as_slice(),
            valid("invalid UTF-8 between tokens/ok").as_bytes(),
            b"\xff]}",
        ]
        .concat(),
        400,
        "invalid_json",
    ));
    cases.push(refused(
        "a JSON array of events",
        format!("[{}]", valid("a JSON array of events/ok")),
        400,
        "not_an_object",
    ));
    for (name, body) in [
        ("a JSON number", "42"),
        ("a JSON string", "\"visit\""),
        ("JSON null", "null"),
        ("JSON true", "true"),
    ] {
        cases.push(refused(name, body, 400, "not_an_object"));
    }
    cases.push(refused("an empty body", "", 400, "invalid_json"));
    cases.push(refused("a body of blanks", " \r\n\t ", 400, "invalid_json"));
    cases.push(refused(
        "batch is a string",
        r#"{"batch":"x"}"#,
        400,
        "invalid_batch",
    ));
    cases.push(refused(
        "batch is an object",
        format!("{{\"batch\":{}}}", valid("batch is an object/ok")),
        400,
        "invalid_batch",
    ));

    // Wrong types, field by field.
    for (name, fields, code) in [
        ("number session id", r#","sessionId":42"#, "invalid_event"),
        (
            "object url",
            r#","url":{"href":"https://x/"}"#,
            "invalid_event",
        ),
        ("array referrer", r#","referrer":["a"]"#, "invalid_event"),
        ("number user agent", r#","userAgent":7"#, "invalid_event"),
        ("string data", r#","data":"label""#, "invalid_data"),
        ("array data", r#","data":[1,2]"#, "invalid_data"),
        ("number data", r#","data":3"#, "invalid_data"),
        ("number id", r#","id":5"#, "invalid_id"),
        ("number type", r#","type":1"#, "invalid_event"),
    ] {
        // The wrong value replaces the event's own field (a duplicate key
        // would be refused for that reason instead).
        cases.push(bad_event(
            &format!("wrong type: {name}"),
            |bad_id| {
                let mut event: serde_json::Map<String, Value> =
                    serde_json::from_str(&event_with(bad_id, "")).unwrap();
                let field: serde_json::Map<String, Value> =
                    serde_json::from_str(&format!("{{{}}}", &fields[1..])).unwrap();
                event.extend(field);
                Value::Object(event).to_string()
            },
            code,
        ));
    }
    cases.push(odd_event(
        "wrong type: object timestamp",
        |id| event_with(id, r#","timestamp":{"at":1}"#),
        Box::new(check_occurred_at_is_receive_time),
    ));
    for (name, member) in [
        ("a number", "1"),
        ("a string", "\"visit\""),
        ("null", "null"),
        (
            "an array",
            "[{\"type\":\"visit\",\"sessionId\":\"hostile\"}]",
        ),
        ("true", "true"),
    ] {
        let name = format!("batch member that is {name}");
        cases.push(bad_event(&name, |_| member.to_owned(), "invalid_event"));
    }
    cases.push(odd_event(
        "null data is an empty object",
        |id| event_with(id, r#","data":null"#),
        expect_fields(vec![("metadata", Some("{}"))]),
    ));

    // Sizes.
    let over = |n: usize| {
        let name = format!("{n} events");
        let events: Vec<String> = (0..n).map(|i| valid(&id(&name, &i.to_string()))).collect();
        Case {
            name: name.clone(),
            send: post(batch(&events)),
            expect: Expect::Error(413, "too_many_events"),
            stored: vec![],
            refused: (0..n).map(|i| id(&name, &i.to_string())).collect(),
        }
    };
    cases.push(over(501));
    for (name, size) in [
        ("body of 513 KiB, partly sent", 513 * 1024),
        ("body of 50 MiB, partly sent", 50 * 1024 * 1024),
    ] {
        // Only the first 16 KiB of the body is ever sent: the 413 must come
        // from the declared length without waiting for the rest (after the
        // server's short pause for a body that keeps arriving), and the
        // connection closes, since its remaining bytes never came.
        let start = padded(&id(name, "ok"), 16 * 1024);
        cases.push(Case {
            name: name.into(),
            send: Request::Raw {
                bytes: declared_but_partial(&[], size, &start),
                then: Then::Closed,
            },
            expect: Expect::Error(413, "body_too_large"),
            stored: vec![],
            refused: vec![id(name, "ok")],
        });
    }
    for (name, size) in [
        ("body of 513 KiB, sent whole", 513 * 1024),
        ("body of 50 MiB, sent whole", 50 * 1024 * 1024),
    ] {
        // A client that sends the whole body at once (as browsers do) gets
        // its 413 once the body is thrown away, and keeps its connection.
        cases.push(Case {
            name: name.into(),
            send: whole_then_reused(&[], &padded(&id(name, "ok"), size)),
            expect: Expect::Error(413, "body_too_large"),
            stored: vec![],
            refused: vec![id(name, "ok")],
        });
    }
    {
        // Beyond what the server is willing to throw away, the 413 comes at
        // once, without a pause for the rest, and the connection closes.
        let name = "body declaring 1 GiB, partly sent";
        let start = padded(&id(name, "ok"), 16 * 1024);
        cases.push(Case {
            name: name.into(),
            send: Request::Raw {
                bytes: declared_but_partial(&[], 1 << 30, &start),
                then: Then::Closed,
            },
            expect: Expect::Error(413, "body_too_large"),
            stored: vec![],
            refused: vec![id(name, "ok")],
        });
    }
    {
        // Chunked: no declared length; the 413 comes as soon as the body
        // passes the limit, before the client has sent the rest. What
        // follows is discarded as it arrives, so the connection is reused.
        let name = "chunked body of 50 MiB";
        let body = padded(&id(name, "ok"), 50 * 1024 * 1024);
        let (first, rest) = body.split_at(600 * 1024);
        let mut bytes = raw_post(&[("Transfer-Encoding", "chunked")], &[]);
        for piece in first.chunks(64 * 1024) {
            bytes.extend(chunk(piece));
        }
        let mut tail: Vec<u8> = rest.chunks(1024 * 1024).flat_map(chunk).collect();
        tail.extend_from_slice(b"0\r\n\r\n");
        cases.push(Case {
            name: name.into(),
            send: Request::Raw {
                bytes,
                then: Then::Reused { rest: tail },
            },
            expect: Expect::Error(413, "body_too_large"),
            stored: vec![],
            refused: vec![id(name, "ok")],
        });
    }
    cases.push(bad_event(
        "8 KB url",
        |id| {
            event_with(
                id,
                &format!(r#","url":"https://site.example/{}""#, "u".repeat(8 * 1024)),
            )
        },
        "url_too_long",
    ));
    cases.push(odd_event(
        "click label of 12 KB",
        |id| {
            format!(
                r#"{{"type":"click","sessionId":"{SESSION}","id":"{id}","data":{{"label":"{}"}}}}"#,
                incompressible(12 * 1024)
            )
        },
        Box::new(|row| {
            let data: Value = serde_json::from_str(&row.metadata).map_err(|e| e.to_string())?;
            let label = data["label"].as_str().unwrap_or_default();
            if label.len() != 12 * 1024 {
                return Err(format!("data.label of {} bytes stored", label.len()));
            }
            // The label column (and the rollups, which index it) keep 256
            // bytes of it.
            match row.label.as_deref() {
                Some(l) if l.len() == 256 && label.starts_with(l) => Ok(()),
                other => Err(format!("label column of {:?} bytes", other.map(str::len))),
            }
        }),
    ));
    cases.push(odd_event(
        "url of exactly 2048 bytes",
        |id| {
            event_with(
                id,
                &format!(r#","url":"https://x/{}""#, "u".repeat(2048 - 10)),
            )
        },
        Box::new(|row| match row.url.as_deref().map(str::len) {
            Some(2048) => Ok(()),
            other => Err(format!("url of {other:?} bytes stored")),
        }),
    ));
    cases.push(bad_event(
        "data nested 9 deep",
        |id| event_with(id, &format!(r#","data":{}"#, nested_objects(9))),
        "data_too_deep",
    ));
    cases.push(odd_event(
        "data nested 8 deep",
        |id| event_with(id, &format!(r#","data":{}"#, nested_objects(8))),
        Box::new(ok),
    ));
    cases.push(bad_event(
        "data nested 10,000 deep",
        |id| event_with(id, &format!(r#","data":{}"#, nested_objects(10_000))),
        "invalid_event",
    ));
    cases.push(refused(
        "body nested 10,000 deep in arrays",
        format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
        400,
        "not_an_object",
    ));
    // An unknown field is skipped without recursion, however deep: the body
    // is one event, without a type.
    cases.push(refused(
        "body nested 10,000 deep in objects",
        nested_objects(10_000),
        400,
        "no_valid_events",
    ));
    cases.push(odd_event(
        "unknown field nested 10,000 deep",
        |id| event_with(id, &format!(r#","extra":{}"#, nested_objects(10_000))),
        expect_fields(vec![("metadata", Some("{}"))]),
    ));

    // Text.
    cases.push(odd_event(
        "NUL and other control characters",
        |id| {
            format!(
                r#"{{"type":"cl\u0000ick","sessionId":"{SESSION}","id":"{id}",
                "url":"https://x/\u0000a\r\nb\u0085","referrer":"r\u0007",
                "userAgent":"ua\u0000\r\nX-Injected: 1","data":{{"label":"La\u0000bel\u001b[31m",
                "text":"two\nlines\u0000","k\u0000ey":["\u0001x"]}}}}"#
            )
        },
        Box::new(|row| {
            no_control_characters(row)?;
            expect_fields(vec![
                ("type", Some("click")),
                ("url", Some("https://x/ab")),
                ("referrer", Some("r")),
                ("user_agent", Some("uaX-Injected: 1")),
                ("label", Some("Label[31m")),
                (
                    "metadata",
                    Some(r#"{"key":["x"],"label":"Label[31m","text":"two\nlines"}"#),
                ),
            ])(row)
        }),
    ));
    cases.push(bad_event(
        "NUL in the session id",
        |id| format!(r#"{{"type":"visit","sessionId":"a\u0000b","id":"{id}"}}"#),
        "invalid_session_id",
    ));
    cases.push(bad_event(
        "NUL in the event id",
        |_| event_with("x\\u0000y", ""),
        "invalid_id",
    ));
    type EventWithId = fn(&str) -> String;
    let lone_surrogates: [(&str, EventWithId); 5] = [
        ("lone surrogate in the session id", |id| {
            format!(r#"{{"type":"visit","sessionId":"\ud800","id":"{id}"}}"#)
        }),
        ("lone surrogate in the url", |id| {
            event_with(id, r#","url":"x\ud800""#)
        }),
        ("lone low surrogate in the type", |id| {
            format!(r#"{{"type":"\udc00","sessionId":"{SESSION}","id":"{id}"}}"#)
        }),
        ("lone surrogate in data", |id| {
            event_with(id, r#","data":{"label":"\ud800"}"#)
        }),
        ("lone surrogate in a data key", |id| {
            event_with(id, r#","data":{"\ud800":1}"#)
        }),
    ];
    for (name, event) in lone_surrogates {
        cases.push(bad_event(name, event, "invalid_event"));
    }
    cases.push(odd_event(
        "a surrogate pair",
        |id| event_with(id, r#","data":{"label":"\ud83d\ude00"}"#),
        expect_fields(vec![("metadata", Some("{\"label\":\"😀\"}"))]),
    ));
    {
        let name = "invalid UTF-8 inside strings";
        let good = id(name, "ok");
        let odd = id(name, "odd");
        let mut event =
            format!(r#"{{"type":"visit","sessionId":"{SESSION}","id":"{odd}","url":"https://x/"#)
                .into_bytes();
        event.extend_from_slice(b"\xff\xfe");
        event.extend_from_slice(br#"","data":{"city":"M"#);
        // A UTF-16 surrogate encoded as UTF-8 (CESU-8) is invalid UTF-8 too.
        event.extend_from_slice(b"\xed\xa0\x80");
        event.extend_from_slice(br#"nchen"}}"#);
        let body = [
            b"{\"batch\":[".as_slice(),
            valid(&good).as_bytes(),
            b",",
            &event,
            b"]}",
        ]
        .concat();
        cases.push(Case {
            name: name.into(),
            send: post(body),
            expect: Expect::Accepted(vec![]),
            stored: vec![
                (good, Box::new(ok)),
                (
                    odd,
                    expect_fields(vec![
                        ("url", Some("https://x/\u{fffd}\u{fffd}")),
                        (
                            "metadata",
                            Some("{\"city\":\"M\u{fffd}\u{fffd}\u{fffd}nchen\"}"),
                        ),
                    ]),
                ),
            ],
            refused: vec![],
        });
    }

    // Times.
    for (name, timestamp) in [
        ("far-future timestamp", r#""9999-12-31T23:59:59Z""#),
        ("far-future timestamp in millis", "253402300799000"),
        (
            "timestamp past the year 9999",
            r#""+10000-01-01T00:00:00Z""#,
        ),
        ("far-past timestamp", r#""0001-01-01T00:00:00Z""#),
        ("epoch timestamp", "0"),
        ("negative timestamp in millis", "-62135596800000"),
        ("timestamp beyond i64 millis", "9223372036854775807"),
        ("timestamp as a huge float", "1e300"),
        ("unparseable timestamp", r#""next tuesday""#),
    ] {
        cases.push(odd_event(
            name,
            |id| event_with(id, &format!(r#","timestamp":{timestamp}"#)),
            Box::new(check_occurred_at_is_receive_time),
        ));
    }
    {
        let minute_ago = chrono::Utc::now() - chrono::Duration::minutes(1);
        let stamp = minute_ago.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        cases.push(odd_event(
            "plausible timestamp",
            |id| event_with(id, &format!(r#","timestamp":"{}""#, stamp)),
            Box::new(move |row| {
                let stamp = minute_ago.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                if row.occurred_at().timestamp_millis() == minute_ago.timestamp_millis() {
                    Ok(())
                } else {
                    Err(format!(
                        "event time {} instead of {stamp}",
                        row.occurred_at()
                    ))
                }
            }),
        ));
    }

    // Duplicate keys.
    cases.push(bad_event(
        "duplicate url",
        |id| event_with(id, r#","url":"https://a/","url":"https://b/""#),
        "invalid_event",
    ));
    cases.push(bad_event(
        "duplicate id",
        |id| event_with(id, &format!(r#","id":"{id}-2""#)),
        "invalid_event",
    ));
    cases.push(bad_event(
        "type and its alias event_type",
        |id| event_with(id, r#","event_type":"click""#),
        "invalid_event",
    ));
    cases.push(bad_event(
        "sessionId and its alias session_id",
        |id| event_with(id, r#","session_id":"other""#),
        "invalid_event",
    ));
    {
        let name = "duplicate batch";
        let body = format!(
            r#"{{"batch":[{}],"batch":[{}]}}"#,
            valid(&id(name, "ok")),
            valid(&id(name, "ok2"))
        );
        let mut case = refused(name, body, 400, "invalid_json");
        case.refused.push(id(name, "ok2"));
        cases.push(case);
    }
    cases.push(odd_event(
        "duplicate key inside data: the last one wins",
        |id| event_with(id, r#","data":{"k":"first","k":"second"}"#),
        expect_fields(vec![("metadata", Some(r#"{"k":"second"}"#))]),
    ));

    // Encodings.
    {
        let name = "gzip body";
        cases.push(Case {
            name: name.into(),
            send: Request::Post {
                headers: vec![("Content-Encoding", "gzip")],
                body: gzip_stored(valid(&id(name, "ok")).as_bytes()),
            },
            expect: Expect::Error(415, "unsupported_encoding"),
            stored: vec![],
            refused: vec![id(name, "ok")],
        });
    }
    for (name, encoding) in [
        ("deflate body", "deflate"),
        ("brotli body", "br"),
        ("upper-case GZIP", "GZIP"),
    ] {
        cases.push(Case {
            name: name.into(),
            send: Request::Post {
                headers: vec![("Content-Encoding", encoding)],
                body: valid(&id(name, "ok")).into_bytes(),
            },
            expect: Expect::Error(415, "unsupported_encoding"),
            stored: vec![],
            refused: vec![id(name, "ok")],
        });
    }
    {
        // About 130 KB that inflate to 128 MiB: under the body limit, so only
        // the refusal of the encoding stands between it and an inflater.
        let bomb = gzip_bomb(128 * 1024 * 1024 / 258);
        assert!(bomb.len() < 512 * 1024, "the bomb fits the body limit");
        cases.push(Case {
            name: "gzip bomb, sent whole".into(),
            send: whole_then_reused(&[("Content-Encoding", "gzip")], &bomb),
            expect: Expect::Error(415, "unsupported_encoding"),
            stored: vec![],
            refused: vec![],
        });
        // Only the first KiB is sent: the 415 comes before the body is read.
        cases.push(Case {
            name: "gzip bomb, partly sent".into(),
            send: Request::Raw {
                bytes: declared_but_partial(
                    &[("Content-Encoding", "gzip")],
                    bomb.len(),
                    &bomb[..1024],
                ),
                then: Then::Closed,
            },
            expect: Expect::Error(415, "unsupported_encoding"),
            stored: vec![],
            refused: vec![],
        });
    }
    {
        let name = "identity encoding";
        cases.push(Case {
            name: name.into(),
            send: Request::Post {
                headers: vec![("Content-Encoding", "identity")],
                body: valid(&id(name, "ok")).into_bytes(),
            },
            expect: Expect::Accepted(vec![]),
            stored: vec![(id(name, "ok"), Box::new(ok))],
            refused: vec![],
        });
    }

    // Methods.
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        cases.push(Case {
            name: format!("{method} /track"),
            send: Request::Method(method),
            expect: Expect::Error(405, "method_not_allowed"),
            stored: vec![],
            refused: vec![],
        });
    }

    // Header values with CR, LF and other bytes reqwest will not send.
    // The HTTP layer refuses a malformed head with a bare 400 and closes;
    // an accepted request leaves the connection open for the next one.
    let with_header = |name: &str, header: &[u8], expect: Expect, check: Option<Check>| {
        let event = valid(&id(name, "ok"));
        let mut bytes = format!(
            "POST /track HTTP/1.1\r\nHost: beacon.test\r\nContent-Length: {}\r\n",
            event.len()
        )
        .into_bytes();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(b"\r\n\r\n");
        bytes.extend_from_slice(event.as_bytes());
        let (stored, refused, then) = match check {
            Some(check) => (
                vec![(id(name, "ok"), check)],
                vec![],
                Then::Reused { rest: vec![] },
            ),
            None => (vec![], vec![id(name, "ok")], Then::Closed),
        };
        Case {
            name: name.into(),
            send: Request::Raw { bytes, then },
            expect,
            stored,
            refused,
        }
    };
    cases.push(with_header(
        "a bare CR in a header value",
        b"User-Agent: agent\rX-Injected: 1",
        Expect::Status(400),
        None,
    ));
    cases.push(with_header(
        "a header folded over two lines",
        b"User-Agent: agent\r\n X-Injected: 1",
        Expect::Status(400),
        None,
    ));
    cases.push(with_header(
        "a NUL in a header value",
        b"User-Agent: age\0nt",
        Expect::Status(400),
        None,
    ));
    cases.push(with_header(
        "an escape character in a header value",
        b"User-Agent: age\x1b[31mnt",
        Expect::Status(400),
        None,
    ));
    // A bare LF ends the header line (RFC 9112 lets a server accept it): the
    // injected text is a header of its own and never part of the user agent.
    cases.push(with_header(
        "a bare LF in a header value",
        b"User-Agent: agent\nX-Injected: 1",
        Expect::Accepted(vec![]),
        Some(expect_fields(vec![("user_agent", Some("agent"))])),
    ));
    // Bytes that are not ASCII make the header unreadable as text: ignored.
    cases.push(with_header(
        "non-ASCII bytes in the user agent",
        b"User-Agent: ag\xffent",
        Expect::Accepted(vec![]),
        Some(expect_fields(vec![("user_agent", None)])),
    ));

    cases
}

/// Sends a request through reqwest: its status, content type and body.
async fn exchange(
    request: reqwest::RequestBuilder,
) -> Result<(u16, Option<String>, Vec<u8>), String> {
    let response = request
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let body = response.bytes().await.map_err(|e| e.to_string())?.to_vec();
    Ok((status, content_type, body))
}

/// Sends one case and checks its response; `Err` says what went wrong.
async fn run(
    app: &TestApp,
    client: &reqwest::Client,
    case: &Case,
) -> Result<Option<String>, String> {
    let url = format!("{}/track", app.address);
    let (status, content_type, body, mut connection) = match &case.send {
        Request::Post { headers, body } => {
            let mut request = client
                .post(&url)
                .header("Content-Type", "application/json")
                .body(body.clone());
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let (status, content_type, body) = exchange(request).await?;
            (status, content_type, body, None)
        }
        Request::Method(method) => {
            let (status, content_type, body) =
                exchange(client.request(method.clone(), &url)).await?;
            (status, content_type, body, None)
        }
        Request::Raw { bytes, .. } => {
            let mut conn = RawConnection::open(app).await;
            conn.send(bytes).await?;
            let response = conn.response().await?;
            let content_type = response.headers.get("content-type").cloned();
            (
                response.status,
                content_type,
                response.body,
                Some((conn, response.headers)),
            )
        }
    };

    let text = String::from_utf8_lossy(&body).into_owned();
    let expected_status = match case.expect {
        Expect::Accepted(_) => 200,
        Expect::Error(status, _) | Expect::Status(status) => status,
    };
    if status != expected_status {
        return Err(format!(
            "status {status} instead of {expected_status}: {text:.300}"
        ));
    }
    match &case.expect {
        Expect::Status(_) => {}
        Expect::Accepted(_) | Expect::Error(..) => {
            if content_type.as_deref() != Some("application/json") {
                return Err(format!("content type {content_type:?}, not JSON"));
            }
        }
    }
    match &case.expect {
        Expect::Accepted(rejected) => {
            let answer: Value =
                serde_json::from_slice(&body).map_err(|e| format!("{e}: {text:.300}"))?;
            if answer["ok"] != true || answer["accepted"] != case.stored.len() {
                return Err(format!("expected {} accepted: {answer}", case.stored.len()));
            }
            let got: Vec<(u64, &str)> = answer["rejected"]
                .as_array()
                .ok_or("no rejected array")?
                .iter()
                .map(|r| {
                    (
                        r["index"].as_u64().unwrap_or(u64::MAX),
                        r["error"].as_str().unwrap_or(""),
                    )
                })
                .collect();
            let want: Vec<(u64, &str)> = rejected.iter().map(|(i, c)| (*i as u64, *c)).collect();
            if got != want {
                return Err(format!("rejected {got:?} instead of {want:?}: {answer}"));
            }
        }
        Expect::Error(_, code) => {
            let answer: Value =
                serde_json::from_slice(&body).map_err(|e| format!("{e}: {text:.300}"))?;
            if answer["error"] != *code {
                return Err(format!(
                    "error {} instead of {code}: {answer}",
                    answer["error"]
                ));
            }
            if answer["message"].as_str().is_none_or(str::is_empty) {
                return Err(format!("no message: {answer}"));
            }
        }
        Expect::Status(_) => {}
    }

    // What becomes of a raw connection; a follow-up event proves the
    // client's next request works.
    let follow_up = id(&case.name, "next");
    let next = format!(
        "POST /track HTTP/1.1\r\nHost: beacon.test\r\nContent-Length: {}\r\n\r\n{}",
        valid(&follow_up).len(),
        valid(&follow_up)
    );
    let Request::Raw { then, .. } = &case.send else {
        return Ok(None);
    };
    let (mut conn, headers) = connection.take().ok_or("no connection")?;
    match then {
        Then::Closed => {
            if headers.get("connection").map(|v| v.to_ascii_lowercase()) != Some("close".into()) {
                return Err(format!(
                    "the response does not say Connection: close: {headers:?}"
                ));
            }
            conn.closed_by_server().await?;
            let mut again = RawConnection::open(app).await;
            again.send(next.as_bytes()).await?;
            let response = again.response().await?;
            if response.status != 200 {
                return Err(format!(
                    "the next request, on a new connection: {}",
                    response.status
                ));
            }
            Ok(Some(follow_up))
        }
        Then::Reused { rest } => {
            if headers
                .get("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"))
            {
                return Err(format!("the connection is closed: {headers:?}"));
            }
            conn.send(rest).await?;
            conn.send(next.as_bytes()).await?;
            let response = conn.response().await?;
            if response.status != 200 {
                return Err(format!(
                    "the next request on the same connection: {} {:?}",
                    response.status,
                    String::from_utf8_lossy(&response.body)
                ));
            }
            Ok(Some(follow_up))
        }
    }
}

async fn every_hostile_input_is_answered_and_only_the_valid_events_are_stored(db: &TestDatabase) {
    let app = spawn_app(db);
    // Every request is bounded: a case that hangs fails instead of
    // blocking the suite.
    let client = reqwest::Client::builder()
        .timeout(EXCHANGE_LIMIT)
        .build()
        .unwrap();
    let cases = cases();
    let mut names = std::collections::HashSet::new();
    for case in &cases {
        assert!(
            names.insert(case.name.as_str()),
            "case names are unique: {}",
            case.name
        );
    }

    let mut expected: HashMap<String, (&str, &Check)> = HashMap::new();
    let follow_up_check: Check = Box::new(ok);
    let mut refused: Vec<(&str, &String)> = vec![];
    for case in &cases {
        let outcome = tokio::time::timeout(EXCHANGE_LIMIT * 2, run(&app, &client, case))
            .await
            .unwrap_or_else(|_| Err("the exchange hung".into()));
        match outcome {
            Ok(follow_up) => {
                if let Some(id) = follow_up {
                    expected.insert(id, (case.name.as_str(), &follow_up_check));
                }
            }
            Err(e) => panic!("case {:?}: {e}", case.name),
        }
        for (id, check) in &case.stored {
            expected.insert(id.clone(), (case.name.as_str(), check));
        }
        refused.extend(case.refused.iter().map(|id| (case.name.as_str(), id)));
    }

    // The server is still up and answers normally.
    assert_eq!(app.get("/up").await.status(), 200, "the server is still up");
    let last = "after the table/ok";
    assert_eq!(
        app.post_track(valid(last)).await.status(),
        200,
        "a last valid event is accepted"
    );
    expected.insert(last.into(), ("after the table", &follow_up_check));

    // Exactly the valid events are stored, each once, each as expected.
    let stored = {
        let store = app.store.clone();
        tokio::task::spawn_blocking(move || store.recent_events(1_000_000).unwrap())
            .await
            .unwrap()
    };
    let mut by_id: HashMap<&str, Vec<&StoredEvent>> = HashMap::new();
    for row in &stored {
        by_id.entry(row.public_id.as_str()).or_default().push(row);
    }
    for (id, (case, check)) in &expected {
        match by_id.get(id.as_str()).map(Vec::as_slice) {
            Some([row]) => {
                assert_eq!(
                    row.session_token, SESSION,
                    "case {case:?}: event {id} session"
                );
                if let Err(e) = check(row) {
                    panic!("case {case:?}: event {id} stored wrongly: {e}");
                }
            }
            Some(rows) => panic!("case {case:?}: event {id} stored {} times", rows.len()),
            None => panic!("case {case:?}: valid event {id} is not stored"),
        }
    }
    for (case, id) in &refused {
        assert!(
            !by_id.contains_key(id.as_str()),
            "case {case:?}: refused event {id} is stored"
        );
    }
    let unexpected: Vec<&str> = by_id
        .keys()
        .filter(|id| !expected.contains_key(**id))
        .copied()
        .collect();
    assert!(
        unexpected.is_empty(),
        "stored but not expected: {unexpected:?}"
    );
    assert_eq!(
        app.count().await,
        expected.len() as i64,
        "events in the database"
    );
    app.stop().await;
}

#[test]
fn the_hand_made_gzip_is_valid() {
    // The bomb's trailer: the CRC of zeros computed without the zeros.
    for n in [0u64, 1, 7, 258, 1000, 65_537] {
        assert_eq!(crc32_of_zeros(n), crc32(&vec![0; n as usize]), "{n} zeros");
    }
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926, "the CRC-32 check value");
}
