//! The alert webhook (`--alert-webhook`): a JSON POST when an anomaly opens
//! and when it ends, from a thread of its own with a bounded queue, retried
//! with backoff. Only the instance that detects sends (see
//! `anomaly_worker`), and nothing here is on the ingest path: a full queue
//! drops the alert (logged) rather than wait.
//!
//! The payload (documented in `docs/api.md`):
//! `{"event": "opened" | "closed", "anomaly": {…as on /anomalies…},
//! "text": "…"}`; `text` reads as a sentence in a chat incoming-webhook.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

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
        let text = if opened {
            format!(
                "Beacon: {what} on {} since {}: {} page views where {:.0} were expected (severity {:.1}).",
                anomaly.series, anomaly.onset, anomaly.observed, anomaly.expected, anomaly.severity
            )
        } else {
            format!(
                "Beacon: the {what} on {} that began {} is over (back to normal at {}).",
                anomaly.series,
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

/// The running sender. Dropping it closes the queue; the thread sends
/// what is queued and ends on its own (the process does not wait for a
/// receiver that is down).
pub struct Alerter {
    queue: SyncSender<Alert>,
    _handle: JoinHandle<()>,
}

impl Alerter {
    /// Starts the sender thread for `url`; a failed POST is retried after
    /// `backoff`, then twice as long each time.
    pub fn start(url: String, backoff: Duration) -> Result<Self, StartError> {
        let (queue, alerts) = mpsc::sync_channel::<Alert>(QUEUE);
        let (ready, built) = mpsc::channel::<Result<(), String>>();
        // The blocking client runs a runtime of its own, which must be
        // created and dropped outside the application's async runtime: on
        // the thread, which says whether it could.
        let handle =
            spawn_thread(
                "beacon-alerts".into(),
                move || match reqwest::blocking::Client::builder()
                    .timeout(TIMEOUT)
                    .build()
                {
                    Ok(client) => {
                        let _ = ready.send(Ok(()));
                        run(&client, &url, &alerts, backoff);
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e.to_string()));
                    }
                },
            )?;
        match built.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(StartError::Task(format!("alert webhook client: {e}"))),
            Err(e) => return Err(StartError::Task(format!("alert webhook client: {e}"))),
        }
        Ok(Self {
            queue,
            _handle: handle,
        })
    }

    /// Queues an alert without waiting; drops it (logged) when the queue
    /// is full.
    pub fn send(&self, alert: Alert) {
        match self.queue.try_send(alert) {
            Ok(()) => {}
            Err(TrySendError::Full(a)) => {
                log::warn!("alert queue full, alert dropped: {}", a.text);
            }
            Err(TrySendError::Disconnected(a)) => {
                log::warn!("alert sender stopped, alert dropped: {}", a.text);
            }
        }
    }
}

fn run(client: &reqwest::blocking::Client, url: &str, alerts: &Receiver<Alert>, backoff: Duration) {
    while let Ok(alert) = alerts.recv() {
        let mut wait = backoff;
        for attempt in 1..=ATTEMPTS {
            match client.post(url).json(&alert).send() {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => log::warn!("alert webhook answered {} (attempt {attempt})", r.status()),
                Err(e) => log::warn!("alert webhook failed (attempt {attempt}): {e}"),
            }
            if attempt == ATTEMPTS {
                log::error!("alert given up after {ATTEMPTS} attempts: {}", alert.text);
            } else {
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(300));
            }
        }
    }
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
            "Beacon: traffic spike on site since 2026-12-01T10:00:00Z: 300 page views where 80 were expected (severity 12.2)."
        );
        let closed = bodies.recv_timeout(WAIT).unwrap();
        assert_eq!(closed["event"], "closed");
        assert_eq!(closed["anomaly"]["end"], "2026-12-01T11:00:00Z");
        assert!(closed["text"].as_str().unwrap().contains("is over"));
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
