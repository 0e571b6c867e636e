//! The alert webhook (`--alert-webhook`): a JSON POST when an anomaly opens
//! and when it ends, from a thread of its own with a bounded queue, retried
//! with backoff. Only the instance that detects sends (see
//! `anomaly_worker`), and nothing here is on the ingest path: a full queue
//! drops the alert (logged) rather than wait. At shutdown the queued
//! alerts are sent within a bounded time ([`Alerter::finish`]).
//!
//! The payload (documented in `docs/api.md`):
//! `{"event": "opened" | "closed", "anomaly": {…as on /anomalies…},
//! "text": "…"}`; `text` reads as a sentence in a chat incoming-webhook.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::anomaly_worker::AnomalyView;
use crate::tasks::spawn_thread;
use crate::StartError;

/// Alerts waiting to be sent; beyond it new ones are dropped.
const QUEUE: usize = 64;

/// Attempts per alert, the first included.
const ATTEMPTS: u32 = 5;

/// Longest wait for the receiver's answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What the webhook receives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// `opened` or `closed`.
    pub event: &'static str,
    /// The anomaly, as `GET /anomalies` shows it.
    pub anomaly: AnomalyView,
    /// One human sentence, for chat incoming-webhooks.
    pub text: String,
}

impl Alert {
    /// The alert of an anomaly that opened (`opened: true`) or closed.
    pub fn new(opened: bool, anomaly: AnomalyView) -> Self {
        let what = match anomaly.kind.as_str() {
            "spike" => "traffic spike",
            "drop" => "traffic drop",
            "dark" => "no traffic at all (dark)",
            other => other,
        };
        let on = anomaly.series_in_words();
        let text = if opened {
            format!(
                "Beacon: {what} {on} since {}: {} page views where {:.0} were expected (severity {:.1}).",
                anomaly.onset, anomaly.observed, anomaly.expected, anomaly.severity
            )
        } else {
            format!(
                "Beacon: the {what} {on} that began {} is over (back to normal at {}).",
                anomaly.onset,
                anomaly.end.as_deref().unwrap_or("now")
            )
        };
        Self {
            event: if opened { "opened" } else { "closed" },
            anomaly,
            text,
        }
    }
}

/// Queues alerts for the sender thread (the anomaly worker holds one).
#[derive(Clone)]
pub struct AlertSender {
    queue: SyncSender<Alert>,
    shared: Arc<Shared>,
}

impl AlertSender {
    /// Queues an alert without waiting; drops it (logged) when the queue
    /// is full.
    pub fn send(&self, alert: Alert) {
        self.shared.pending.fetch_add(1, Ordering::SeqCst);
        let dropped = match self.queue.try_send(alert) {
            Ok(()) => return,
            Err(TrySendError::Full(a)) => ("alert queue full", a),
            Err(TrySendError::Disconnected(a)) => ("alert sender stopped", a),
        };
        self.shared.pending.fetch_sub(1, Ordering::SeqCst);
        log::warn!("{}, alert dropped: {}", dropped.0, dropped.1.text);
    }
}

/// What the sender thread and the handles share.
#[derive(Default)]
struct Shared {
    /// Alerts queued or being sent.
    pending: AtomicUsize,
    /// Set at shutdown: no attempt starts or waits beyond it.
    deadline: OnceLock<Instant>,
}

impl Shared {
    /// Time left before the shutdown deadline; `None` while running.
    fn left(&self) -> Option<Duration> {
        self.deadline
            .get()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
}

/// The running sender thread. [`Alerter::finish`] at shutdown waits, for
/// a bounded time, until what is queued is sent.
pub struct Alerter {
    sender: AlertSender,
    handle: JoinHandle<()>,
    /// Disconnected when the thread ends.
    done: Receiver<()>,
}

impl Alerter {
    /// Starts the sender thread for `url`; a failed POST is retried after
    /// `backoff`, then twice as long each time.
    pub fn start(url: String, backoff: Duration) -> Result<Self, StartError> {
        let (queue, alerts) = mpsc::sync_channel::<Alert>(QUEUE);
        let (ready, built) = mpsc::channel::<Result<(), String>>();
        let (finished, done) = mpsc::channel::<()>();
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        // The blocking client runs a runtime of its own, which must be
        // created and dropped outside the application's async runtime: on
        // the thread, which says whether it could.
        let handle = spawn_thread("beacon-alerts".into(), move || {
            let _finished = finished;
            match reqwest::blocking::Client::builder()
                .timeout(TIMEOUT)
                .build()
            {
                Ok(client) => {
                    let _ = ready.send(Ok(()));
                    run(&client, &url, &alerts, backoff, &thread_shared);
                }
                Err(e) => {
                    let _ = ready.send(Err(e.to_string()));
                }
            }
        })?;
        match built.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(StartError::Task(format!("alert webhook client: {e}"))),
            Err(e) => return Err(StartError::Task(format!("alert webhook client: {e}"))),
        }
        Ok(Self {
            sender: AlertSender { queue, shared },
            handle,
            done,
        })
    }

    /// A handle that queues alerts.
    pub fn sender(&self) -> AlertSender {
        self.sender.clone()
    }

    /// Queues an alert (see [`AlertSender::send`]).
    pub fn send(&self, alert: Alert) {
        self.sender.send(alert);
    }

    /// Closes the queue once every other [`AlertSender`] is dropped, and
    /// waits at most `wait` for the alerts still queued to be sent (a
    /// failing receiver gets its retries only within that time). Returns
    /// how many were left unsent; they are logged.
    pub fn finish(self, wait: Duration) -> usize {
        let Self {
            sender,
            handle,
            done,
        } = self;
        let shared = Arc::clone(&sender.shared);
        let _ = shared.deadline.set(Instant::now() + wait);
        drop(sender);
        match done.recv_timeout(wait + Duration::from_millis(100)) {
            Err(RecvTimeoutError::Disconnected) => {
                if handle.join().is_err() {
                    log::error!("the alert sender panicked");
                }
            }
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
        }
        let left = shared.pending.load(Ordering::SeqCst);
        if left > 0 {
            log::warn!("{left} alert(s) not sent: the webhook did not take them before shutdown");
        }
        left
    }
}

fn run(
    client: &reqwest::blocking::Client,
    url: &str,
    alerts: &Receiver<Alert>,
    backoff: Duration,
    shared: &Shared,
) {
    while let Ok(alert) = alerts.recv() {
        // One cut short by the shutdown stays pending: it was not sent.
        if deliver(client, url, &alert, backoff, shared) {
            shared.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Posts one alert until it is accepted or given up (true), or the
/// shutdown deadline comes (false).
fn deliver(
    client: &reqwest::blocking::Client,
    url: &str,
    alert: &Alert,
    backoff: Duration,
    shared: &Shared,
) -> bool {
    let mut wait = backoff;
    for attempt in 1..=ATTEMPTS {
        let timeout = match shared.left() {
            Some(left) if left.is_zero() => {
                log::warn!("alert not sent before shutdown: {}", alert.text);
                return false;
            }
            Some(left) => left.min(TIMEOUT),
            None => TIMEOUT,
        };
        match client.post(url).timeout(timeout).json(alert).send() {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) => log::warn!("alert webhook answered {} (attempt {attempt})", r.status()),
            Err(e) => log::warn!("alert webhook failed (attempt {attempt}): {e}"),
        }
        if attempt == ATTEMPTS {
            log::error!("alert given up after {ATTEMPTS} attempts: {}", alert.text);
            return true;
        }
        std::thread::sleep(shared.left().map_or(wait, |left| left.min(wait)));
        wait = (wait * 2).min(Duration::from_secs(300));
    }
    true
}

/// A local webhook receiver for tests: answers each POST with the next
/// status of a list (the last one repeated) and hands over the JSON bodies.
#[cfg(test)]
pub(crate) mod receiver {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// Starts the receiver; returns its URL and the bodies it receives.
    pub(crate) fn start(statuses: Vec<u16>) -> (String, mpsc::Receiver<serde_json::Value>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for (i, stream) in listener.incoming().enumerate() {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let line = line.trim_end().to_ascii_lowercase();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let status = statuses.get(i).or(statuses.last()).copied().unwrap_or(200);
                write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
                if tx.send(serde_json::from_slice(&body).unwrap()).is_err() {
                    return;
                }
            }
        });
        (url, rx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use super::*;

    fn view(end: Option<&str>) -> AnomalyView {
        AnomalyView {
            series: "site".to_owned(),
            kind: "spike".to_owned(),
            onset: "2026-12-01T10:00:00Z".to_owned(),
            start: "2026-12-01T10:10:00Z".to_owned(),
            end: end.map(str::to_owned),
            observed: 300.0,
            expected: 80.4,
            severity: 12.25,
        }
    }

    const WAIT: Duration = Duration::from_secs(20);

    #[test]
    fn an_alert_is_posted_as_documented_json() {
        let (url, bodies) = receiver::start(vec![200]);
        let alerter = Alerter::start(url, Duration::from_millis(10)).unwrap();
        alerter.send(Alert::new(true, view(None)));
        alerter.send(Alert::new(false, view(Some("2026-12-01T11:00:00Z"))));
        let opened = bodies.recv_timeout(WAIT).unwrap();
        assert_eq!(opened["event"], "opened");
        assert_eq!(opened["anomaly"]["kind"], "spike");
        assert_eq!(opened["anomaly"]["end"], serde_json::Value::Null);
        assert_eq!(
            opened["text"],
            "Beacon: traffic spike on the whole site since 2026-12-01T10:00:00Z: 300 page views where 80 were expected (severity 12.2)."
        );
        let closed = bodies.recv_timeout(WAIT).unwrap();
        assert_eq!(closed["event"], "closed");
        assert_eq!(closed["anomaly"]["end"], "2026-12-01T11:00:00Z");
        assert!(closed["text"].as_str().unwrap().contains("is over"));
    }

    #[test]
    fn the_text_names_the_page_or_referrer_an_anomaly_is_about() {
        let page = AnomalyView {
            series: "page:https://site/post".to_owned(),
            ..view(None)
        };
        assert_eq!(
            Alert::new(true, page).text,
            "Beacon: traffic spike on page https://site/post since 2026-12-01T10:00:00Z: 300 page views where 80 were expected (severity 12.2)."
        );
        let referrer = AnomalyView {
            series: "referrer:https://news/".to_owned(),
            kind: "drop".to_owned(),
            ..view(Some("2026-12-01T11:00:00Z"))
        };
        let alert = Alert::new(false, referrer);
        assert_eq!(
            alert.text,
            "Beacon: the traffic drop in page views from referrer https://news/ that began 2026-12-01T10:00:00Z is over (back to normal at 2026-12-01T11:00:00Z)."
        );
        assert_eq!(
            serde_json::to_value(&alert).unwrap()["anomaly"]["series"],
            "referrer:https://news/"
        );
    }

    #[test]
    fn queued_alerts_are_sent_before_finish_returns() {
        let (url, bodies) = receiver::start(vec![200]);
        let alerter = Alerter::start(url, Duration::from_millis(10)).unwrap();
        let sender = alerter.sender();
        for _ in 0..3 {
            sender.send(Alert::new(true, view(None)));
        }
        drop(sender);
        assert_eq!(alerter.finish(WAIT), 0, "nothing left unsent");
        let received: Vec<_> = bodies.try_iter().collect();
        assert_eq!(received.len(), 3, "every queued alert was delivered");
    }

    #[test]
    fn finish_gives_up_on_a_receiver_that_never_accepts_and_counts_what_is_left() {
        let (url, bodies) = receiver::start(vec![500]);
        // A backoff longer than the wait: only the shutdown deadline ends it.
        let alerter = Alerter::start(url, Duration::from_secs(600)).unwrap();
        alerter.send(Alert::new(true, view(None)));
        alerter.send(Alert::new(false, view(Some("2026-12-01T11:00:00Z"))));
        assert_eq!(bodies.recv_timeout(WAIT).unwrap()["event"], "opened");
        let left = alerter.finish(Duration::from_millis(200));
        assert_eq!(left, 2, "the refused alert and the one behind it");
    }

    #[test]
    fn a_failing_receiver_gets_the_alert_again_until_it_accepts_it() {
        let (url, bodies) = receiver::start(vec![500, 503, 200]);
        let alerter = Alerter::start(url, Duration::from_millis(10)).unwrap();
        alerter.send(Alert::new(true, view(None)));
        let tries: Vec<_> = (0..3).map(|_| bodies.recv_timeout(WAIT).unwrap()).collect();
        assert!(
            tries.iter().all(|b| *b == tries[0]),
            "the same alert each time"
        );
        alerter.send(Alert::new(false, view(Some("2026-12-01T11:00:00Z"))));
        assert_eq!(bodies.recv_timeout(WAIT).unwrap()["event"], "closed");
        assert!(
            bodies.recv_timeout(Duration::from_millis(300)).is_err(),
            "an accepted alert is not sent again"
        );
    }

    #[test]
    fn an_alert_the_receiver_never_accepts_is_given_up_and_the_next_is_sent() {
        let (url, bodies) = receiver::start(vec![500, 500, 500, 500, 500, 200]);
        let alerter = Alerter::start(url, Duration::from_millis(10)).unwrap();
        alerter.send(Alert::new(true, view(None)));
        alerter.send(Alert::new(false, view(Some("2026-12-01T11:00:00Z"))));
        let events: Vec<_> = (0..6)
            .map(|_| bodies.recv_timeout(WAIT).unwrap()["event"].clone())
            .collect();
        assert_eq!(
            events,
            ["opened", "opened", "opened", "opened", "opened", "closed"]
        );
    }
}
