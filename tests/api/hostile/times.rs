//! Client timestamps: one far in the future or past, or unreadable, is
//! replaced by the receive time; a plausible one is kept.

use beacon_store::testing::TestDatabase;

use super::case::*;
use crate::on_both_backends;

on_both_backends!(an_implausible_timestamp_becomes_the_receive_time_and_a_plausible_one_is_kept);

async fn an_implausible_timestamp_becomes_the_receive_time_and_a_plausible_one_is_kept(
    db: &TestDatabase,
) {
    super::every_case_is_answered_and_only_the_valid_events_are_stored(db, cases()).await;
}

fn cases() -> Vec<Case> {
    let mut cases = vec![];
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

    cases
}
