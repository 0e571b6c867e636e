//! Other methods on `/track` (GET, PUT, DELETE): 405 with the JSON error
//! shape.

use beacon_store::testing::TestDatabase;

use super::case::*;
use crate::on_both_backends;

on_both_backends!(another_method_on_track_gets_405);

async fn another_method_on_track_gets_405(db: &TestDatabase) {
    super::every_case_is_answered_and_only_the_valid_events_are_stored(db, cases()).await;
}

fn cases() -> Vec<Case> {
    let mut cases = vec![];
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

    cases
}
