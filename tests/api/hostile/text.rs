//! Text that must not reach the database as it came: control characters
//! are removed from what is stored, a NUL in an id or a lone surrogate
//! rejects its event, and invalid UTF-8 inside strings becomes U+FFFD.

use beacon_store::testing::TestDatabase;

use super::case::*;
use crate::on_both_backends;

on_both_backends!(control_characters_and_broken_unicode_never_reach_the_database);

async fn control_characters_and_broken_unicode_never_reach_the_database(db: &TestDatabase) {
    super::every_case_is_answered_and_only_the_valid_events_are_stored(db, cases()).await;
}

fn cases() -> Vec<Case> {
    let mut cases = vec![];
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

    cases
}
