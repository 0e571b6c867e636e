//! `GET /metrics`: operational gauges in the Prometheus text format.

use actix_web::{web, HttpResponse};

use crate::state::AppState;

/// Open streams, queued events, committed events and transactions, active
/// sessions, the rollup worker's progress, the open anomalies and the
/// anomaly detector's mode.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let live = &state.live;
    let open = live.open_anomalies();
    let open_of = |kind: &str| open.iter().filter(|a| a.kind == kind).count();
    let detector = live.detector();
    let mode_is = |mode: &str| u8::from(detector.as_ref().is_some_and(|d| d.mode == mode));
    let history_days = detector.as_ref().map_or(0.0, |d| d.history_days);
    let body = format!(
        "# HELP beacon_open_streams Open /stream connections.\n\
         # TYPE beacon_open_streams gauge\n\
         beacon_open_streams {}\n\
         # HELP beacon_ingest_queued_events Events waiting for a commit.\n\
         # TYPE beacon_ingest_queued_events gauge\n\
         beacon_ingest_queued_events {}\n\
         # HELP beacon_committed_events_total New events committed since start.\n\
         # TYPE beacon_committed_events_total counter\n\
         beacon_committed_events_total {}\n\
         # HELP beacon_ingest_transactions_total Ingest transactions committed since start (events per transaction: group commit at work).\n\
         # TYPE beacon_ingest_transactions_total counter\n\
         beacon_ingest_transactions_total {}\n\
         # HELP beacon_active_sessions Sessions active in the live window.\n\
         # TYPE beacon_active_sessions gauge\n\
         beacon_active_sessions {}\n\
         # HELP beacon_rollup_events_total Events folded into the historical rollups since start.\n\
         # TYPE beacon_rollup_events_total counter\n\
         beacon_rollup_events_total {}\n\
         # HELP beacon_rollup_caught_up_timestamp_seconds Last time the rollups held every committed event (0: not yet).\n\
         # TYPE beacon_rollup_caught_up_timestamp_seconds gauge\n\
         beacon_rollup_caught_up_timestamp_seconds {}\n\
         # HELP beacon_database_outages_total Times the database became unavailable since start (each is logged once, with its cause).\n\
         # TYPE beacon_database_outages_total counter\n\
         beacon_database_outages_total {}\n\
         # HELP beacon_database_up Whether the last storage call found the database available.\n\
         # TYPE beacon_database_up gauge\n\
         beacon_database_up {}\n\
         # HELP beacon_open_anomalies Anomalies open now, by kind (as the database had them at the last interval).\n\
         # TYPE beacon_open_anomalies gauge\n\
         beacon_open_anomalies{{kind=\"spike\"}} {}\n\
         beacon_open_anomalies{{kind=\"drop\"}} {}\n\
         beacon_open_anomalies{{kind=\"dark\"}} {}\n\
         # HELP beacon_anomaly_detector_mode The anomaly detector's mode (1 for the current one; all 0 until a detector reported).\n\
         # TYPE beacon_anomaly_detector_mode gauge\n\
         beacon_anomaly_detector_mode{{mode=\"learning\"}} {}\n\
         beacon_anomaly_detector_mode{{mode=\"cautious\"}} {}\n\
         beacon_anomaly_detector_mode{{mode=\"ready\"}} {}\n\
         # HELP beacon_anomaly_detector_history_days Days of history the anomaly detector has of the site.\n\
         # TYPE beacon_anomaly_detector_history_days gauge\n\
         beacon_anomaly_detector_history_days {}\n",
        live.open_streams(),
        state.ingestor.queued(),
        live.committed_events(),
        state.ingestor.transactions(),
        live.active_sessions(),
        state.rollups.events(),
        state.rollups.caught_up_at(),
        state.health.outages(),
        u8::from(!state.health.is_down()),
        open_of("spike"),
        open_of("drop"),
        open_of("dark"),
        mode_is("learning"),
        mode_is("cautious"),
        mode_is("ready"),
        history_days,
    );
    let mut body = body;
    state.enrichment.write_metrics(&mut body);
    if let Some(buffer) = state.ingestor.buffer() {
        body.push_str(&buffer_metrics(buffer));
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}

/// The Redis buffer's gauges and counters (buffered mode only).
fn buffer_metrics(b: &crate::buffer::BufferStats) -> String {
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    format!(
        "# HELP beacon_redis_up Whether the last Redis call succeeded.\n\
         # TYPE beacon_redis_up gauge\n\
         beacon_redis_up {}\n\
         # HELP beacon_buffer_backlog_events Events accepted (by any instance) and not yet stored.\n\
         # TYPE beacon_buffer_backlog_events gauge\n\
         beacon_buffer_backlog_events {}\n\
         # HELP beacon_buffer_oldest_unstored_age_seconds Age of the oldest accepted event not yet stored (0: none).\n\
         # TYPE beacon_buffer_oldest_unstored_age_seconds gauge\n\
         beacon_buffer_oldest_unstored_age_seconds {:.3}\n\
         # HELP beacon_buffer_appended_events_total Events this instance appended to the stream.\n\
         # TYPE beacon_buffer_appended_events_total counter\n\
         beacon_buffer_appended_events_total {}\n\
         # HELP beacon_buffer_drained_events_total Events this instance's consumers stored from the stream (rate(): the drain rate).\n\
         # TYPE beacon_buffer_drained_events_total counter\n\
         beacon_buffer_drained_events_total {}\n\
         # HELP beacon_buffer_redeliveries_total Entries this instance claimed from a consumer that did not acknowledge them in time.\n\
         # TYPE beacon_buffer_redeliveries_total counter\n\
         beacon_buffer_redeliveries_total {}\n\
         # HELP beacon_buffer_dead_letters_total Entries this instance moved to the dead-letter stream (refused by the database for good).\n\
         # TYPE beacon_buffer_dead_letters_total counter\n\
         beacon_buffer_dead_letters_total {}\n",
        u8::from(b.redis_up()),
        b.backlog(),
        b.oldest_unstored_age(now_ms),
        b.appended(),
        b.drained(),
        b.redelivered(),
        b.dead_letters(),
    )
}
