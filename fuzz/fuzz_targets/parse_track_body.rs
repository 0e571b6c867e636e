//! `parse_track_body` on arbitrary bytes: it must never panic, and every
//! event it accepts must respect every limit it promises (`Limits`,
//! `docs/api.md`). A violated limit is turned into a panic, so libFuzzer
//! reports it like a crash.

#![no_main]

use beacon_model::{check, parse_track_body, Limits, RequestContext};
use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let limits = Limits::default();
    let received = Utc
        .with_ymd_and_hms(2026, 11, 30, 10, 0, 10)
        .single()
        .unwrap_or_default();
    let ctx = RequestContext {
        received_at: received,
        // Control characters in the header too: they must not reach an event.
        user_agent: Some("fuzz/1 \u{0}\r\nX: y"),
    };
    let outcome = parse_track_body(body, &ctx, &limits);
    if let Err(broken) = check::parse_outcome(&outcome, &limits, received) {
        panic!("{broken}");
    }
});
