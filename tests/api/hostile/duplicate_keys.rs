//! Duplicate keys, and a field given together with its alias: refused,
//! except inside `data`, where the last one wins.

use beacon_store::testing::TestDatabase;

use super::case::*;
use crate::on_both_backends;

on_both_backends!(duplicate_keys_are_refused_except_inside_data);

async fn duplicate_keys_are_refused_except_inside_data(db: &TestDatabase) {
    super::every_case_is_answered_and_only_the_valid_events_are_stored(db, cases()).await;
}

fn cases() -> Vec<Case> {
    let mut cases = vec![];
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

    cases
}
