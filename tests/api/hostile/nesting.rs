//! Deeply nested JSON: data deeper than its limit rejects its event,
//! and no depth, however great, brings the server down.

use beacon_store::testing::TestDatabase;

use super::case::*;
use crate::on_both_backends;

on_both_backends!(deep_nesting_is_rejected_or_skipped_and_the_server_stays_up);

async fn deep_nesting_is_rejected_or_skipped_and_the_server_stays_up(db: &TestDatabase) {
    super::every_case_is_answered_and_only_the_valid_events_are_stored(db, cases()).await;
}

fn cases() -> Vec<Case> {
    let mut cases = vec![];
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

    cases
}
