//! Header values with CR, LF, NUL, escapes or bytes that are not ASCII,
//! which reqwest will not send: refused by the HTTP layer, or stored without
//! the injected text.

use beacon_store::testing::TestDatabase;

use super::case::*;
use crate::on_both_backends;

on_both_backends!(a_header_value_with_control_or_non_ascii_bytes_never_reaches_the_database);

async fn a_header_value_with_control_or_non_ascii_bytes_never_reaches_the_database(
    db: &TestDatabase,
) {
    super::every_case_is_answered_and_only_the_valid_events_are_stored(db, cases()).await;
}

fn cases() -> Vec<Case> {
    let mut cases = vec![];
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
