//! The live state: streams opened during ticks, the commit sink and the
//! warm-up on both backends, dropped events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use beacon_model::{NewEvent, VisitorProfile};
use beacon_store::Store;
use serde_json::{json, Value};

use super::*;
use crate::health::DatabaseHealth;
use crate::ingest::Committed;

/// The id of the last tick in `frame` (an SSE `id:` line).
fn last_id(frame: &[u8]) -> Option<u64> {
    std::str::from_utf8(frame)
        .ok()?
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .next_back()?
        .parse()
        .ok()
}

/// A stream opened while the broadcaster ticks starts from the latest
/// frame and then receives only newer ones: never the latest frame a
/// second time (which a dashboard would see as a repeated id).
#[test]
fn a_stream_opened_during_a_tick_never_receives_its_first_frame_twice() {
    // The time plays no part here: every tick and opening uses one.
    let now: DateTime<Utc> = "2026-11-30T10:00:00Z".parse().unwrap_or_default();
    let live = Arc::new(Live::new(
        LiveConfig::default(),
        Duration::from_secs(1),
        now,
    ));
    live.tick(now);
    // Ticks until the streams have raced enough of them (however slowly
    // this thread gets the CPU on a loaded machine), bounded all the same.
    const WANTED: usize = 200;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = {
        let (live, done) = (Arc::clone(&live), Arc::clone(&done));
        std::thread::spawn(move || {
            for _ in 0..5_000_000 {
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                live.tick(now);
            }
        })
    };
    let (mut opened, mut compared) = (0, 0);
    while compared < WANTED && !ticker.is_finished() {
        let (first, mut receiver) = live.open(now);
        let Some(start) = last_id(&first) else {
            panic!("no tick in the opening frame")
        };
        opened += 1;
        // The first frame the stream would send after its opening one.
        let next = loop {
            match receiver.try_recv() {
                Ok(Frame::Data(frame)) => break Some(frame),
                Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                _ => break None,
            }
        };
        if let Some(frame) = next {
            let id = last_id(&frame).unwrap_or_default();
            assert!(
                id > start,
                "opened at tick {start}, then received tick {id}"
            );
            compared += 1;
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(ticker.join().is_ok());
    assert!(
        compared >= WANTED,
        "too few streams raced the ticks to test anything ({compared} of {opened})"
    );
}

fn now() -> DateTime<Utc> {
    "2026-11-30T10:00:10Z".parse().unwrap()
}

/// The latest tick of `live`, as a stream opening now would receive it.
fn latest_tick(live: &Live) -> Value {
    let (first, _receiver) = live.open(now());
    let text = String::from_utf8(first.to_vec()).unwrap();
    let data = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .next_back()
        .unwrap();
    serde_json::from_str(data).unwrap()
}

fn profile(visitor: Option<i64>, country: &str, device: &str, bot: bool) -> Arc<VisitorProfile> {
    Arc::new(VisitorProfile {
        visitor_id: visitor,
        country: Some(country.to_owned()),
        device: Some(device.to_owned()),
        bot,
        ..VisitorProfile::default()
    })
}

/// Page views five seconds before `now()`: one visitor in two tabs (FR,
/// desktop), another on a phone (DE), a session without a profile (as if
/// stored before enrichment) and a crawler kept with `--keep-bots`.
fn visits() -> Vec<NewEvent> {
    let body = |session: &str| {
        json!({"type": "visit", "sessionId": session, "url": "https://site.example/",
               "timestamp": "2026-11-30T10:00:05Z"})
        .to_string()
    };
    let parse = |session: &str| {
        beacon_store::testing::parse_events(&body(session), now(), Some("Mozilla/5.0"))
    };
    let tabs = profile(Some(-11), "FR", "desktop", false);
    let phone = profile(Some(-22), "DE", "mobile", false);
    let crawler = profile(None, "US", "other", true);
    let mut events = Vec::new();
    for (session, profile) in [
        ("tab-1", Some(&tabs)),
        ("tab-2", Some(&tabs)),
        ("phone", Some(&phone)),
        ("old", None),
        ("crawler", Some(&crawler)),
    ] {
        events.extend(parse(session).into_iter().map(|e| match profile {
            Some(p) => e.with_profile(Arc::clone(p)),
            None => e,
        }));
    }
    events
}

/// What the visits above show, whichever way they reached the live state.
fn assert_people_counted_and_the_crawler_left_out(tick: &Value) {
    assert_eq!(tick["active_users"], 4, "four sessions of people: {tick}");
    assert_eq!(tick["visits_last_min"], 4);
    assert_eq!(tick["events_last_min"], 4);
    assert_eq!(
        tick["top_pages"],
        json!([{"url": "https://site.example/", "visitors": 3}]),
        "two tabs are one visitor; the old session is one of its own"
    );
    assert_eq!(
        tick["top_countries"],
        json!([{"country": "DE", "visitors": 1}, {"country": "FR", "visitors": 1}])
    );
    assert_eq!(
        tick["top_devices"],
        json!([{"device": "desktop", "visitors": 1}, {"device": "mobile", "visitors": 1}])
    );
    let sessions: Vec<&str> = tick["recent_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["session_token"].as_str().unwrap())
        .collect();
    assert_eq!(sessions.len(), 4);
    assert!(!sessions.contains(&"crawler"), "{sessions:?}");
    assert_eq!(tick["bots_last_min"], 0, "a kept bot is not a dropped one");
}

fn committed_profiles_feed_the_live_figures_and_kept_bots_count_in_none(store: &Store) {
    let live = Arc::new(Live::new(
        LiveConfig::default(),
        Duration::from_secs(1),
        now(),
    ));
    let sink = commit_sink(Arc::clone(&live), Arc::new(DatabaseHealth::default()));
    let events = visits();
    let receipt = store.insert(&events).unwrap();
    sink(Ok(Committed {
        events: &events,
        receipt: &receipt,
    }));
    live.tick(now());
    assert_people_counted_and_the_crawler_left_out(&latest_tick(&live));
    assert_eq!(
        live.committed_events(),
        5,
        "the crawler's event is committed"
    );

    // After a restart the same figures come back from storage.
    let restarted = Live::new(LiveConfig::default(), Duration::from_secs(1), now());
    warm_up(store, &restarted, now()).unwrap();
    assert_people_counted_and_the_crawler_left_out(&latest_tick(&restarted));
}

beacon_store::store_suite!(committed_profiles_feed_the_live_figures_and_kept_bots_count_in_none);

#[test]
fn dropped_events_show_on_the_stream_for_a_minute() {
    let live = Live::new(LiveConfig::default(), Duration::from_secs(1), now());
    live.record_dropped(DropReason::Bot, 3, now());
    live.record_dropped(DropReason::Bot, 0, now());
    live.tick(now());
    let tick = latest_tick(&live);
    assert_eq!(tick["bots_last_min"], 3);
    assert_eq!(tick["dropped_last_min"], json!({"bot": 3}));
    assert_eq!(tick["events_last_min"], 0, "dropped events are no events");

    live.tick(now() + chrono::TimeDelta::seconds(60));
    let tick = latest_tick(&live);
    assert_eq!(tick["bots_last_min"], 0);
    assert_eq!(tick["dropped_last_min"], json!({}));
}
