//! Fields of the wrong type, and batch members that are not events: each
//! costs at most its own event, never the valid one sent with it.

use beacon_store::testing::TestDatabase;
use serde_json::Value;

use super::case::*;
use crate::on_both_backends;

on_both_backends!(a_field_of_the_wrong_type_costs_at_most_its_own_event);

async fn a_field_of_the_wrong_type_costs_at_most_its_own_event(db: &TestDatabase) {
    super::every_case_is_answered_and_only_the_valid_events_are_stored(db, cases()).await;
}

fn cases() -> Vec<Case> {
    let mut cases = vec![];
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

    cases
}
