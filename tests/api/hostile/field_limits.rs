//! Fields at and over their size limits: a url over its limit rejects its
//! event; a long label is kept whole in the data and cut in its column.

use beacon_store::testing::TestDatabase;
use serde_json::Value;

use super::case::*;
use crate::on_both_backends;

on_both_backends!(a_field_over_its_limit_is_rejected_or_cut_and_one_at_it_is_kept);

async fn a_field_over_its_limit_is_rejected_or_cut_and_one_at_it_is_kept(db: &TestDatabase) {
    super::every_case_is_answered_and_only_the_valid_events_are_stored(db, cases()).await;
}

fn cases() -> Vec<Case> {
    let mut cases = vec![];
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

    cases
}
