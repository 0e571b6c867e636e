//! Bodies that are not one JSON object (or an object whose `batch` is
//! not an array): refused as a whole, with the JSON error that says why.

use beacon_store::testing::TestDatabase;

use super::case::*;
use crate::on_both_backends;

on_both_backends!(a_body_that_is_not_a_json_object_is_refused_whole);

async fn a_body_that_is_not_a_json_object_is_refused_whole(db: &TestDatabase) {
    super::every_case_is_answered_and_only_the_valid_events_are_stored(db, cases()).await;
}

fn cases() -> Vec<Case> {
    let mut cases = vec![];
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

    cases
}
