//! Bodies over the limits (too many events, too many bytes, declared or
//! chunked): 413 without reading what need not be read, and the connection
//! closed or left usable as each case says.

use beacon_store::testing::TestDatabase;

use super::case::*;
use crate::on_both_backends;

on_both_backends!(a_body_over_the_limits_gets_413_and_the_client_can_go_on);

async fn a_body_over_the_limits_gets_413_and_the_client_can_go_on(db: &TestDatabase) {
    super::every_case_is_answered_and_only_the_valid_events_are_stored(db, cases()).await;
}

fn cases() -> Vec<Case> {
    let mut cases = vec![];
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

    cases
}
