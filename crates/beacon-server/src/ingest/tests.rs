//! The pipeline against an in-memory committer whose commits the test can
//! hold and release, so that every ordering below is forced, not hoped for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use beacon_model::{parse_track_body, Limits, NewEvent, RequestContext};
use chrono::{DateTime, Utc};

use super::*;

/// Why a fake commit failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum FakeError {
    #[error("the database is away")]
    Unavailable,
    #[error("event {0} is refused")]
    Refused(String),
}

impl CommitError for FakeError {
    fn is_unavailable(&self) -> bool {
        *self == Self::Unavailable
    }

    fn for_another_request(&self) -> Self {
        self.clone()
    }
}

/// An in-memory committer. An event named `bad...` fails its commit (the
/// way a row the database refuses does); while held, commits wait; while
/// `away`, every commit fails as unavailable.
#[derive(Clone, Default)]
struct Fake(Arc<(Mutex<FakeState>, Condvar)>);

#[derive(Default)]
struct FakeState {
    held: bool,
    away: bool,
    /// Every commit begun, failed ones included: its events' names.
    attempts: Vec<Vec<String>>,
    /// Every commit that succeeded.
    committed: Vec<Vec<String>>,
}

impl Committer for Fake {
    /// How many events the commit stored.
    type Receipt = usize;
    type Error = FakeError;

    fn commit(&self, events: &[NewEvent]) -> Result<usize, FakeError> {
        let names: Vec<String> = events.iter().map(name).collect();
        let mut state = self.state();
        state.attempts.push(names.clone());
        self.0 .1.notify_all();
        while state.held {
            state = self.0 .1.wait(state).unwrap();
        }
        if state.away {
            return Err(FakeError::Unavailable);
        }
        if let Some(bad) = names.iter().find(|n| n.starts_with("bad")) {
            return Err(FakeError::Refused(bad.clone()));
        }
        state.committed.push(names);
        Ok(events.len())
    }
}

impl Fake {
    fn state(&self) -> MutexGuard<'_, FakeState> {
        self.0 .0.lock().unwrap()
    }

    /// Commits begun from now on wait until [`Fake::release`].
    fn hold(&self) {
        self.state().held = true;
    }

    fn release(&self) {
        self.state().held = false;
        self.0 .1.notify_all();
    }

    fn set_away(&self, away: bool) {
        self.state().away = away;
    }

    /// Blocks until `n` commits have begun.
    fn wait_for_attempts(&self, n: usize) {
        let mut state = self.state();
        while state.attempts.len() < n {
            state = self.0 .1.wait(state).unwrap();
        }
    }

    fn attempts(&self) -> Vec<Vec<String>> {
        self.state().attempts.clone()
    }

    fn committed(&self) -> Vec<Vec<String>> {
        self.state().committed.clone()
    }
}

/// An event's name: the last segment of its URL.
fn name(event: &NewEvent) -> String {
    let url = event.url().unwrap_or_default();
    url.rsplit('/').next().unwrap_or_default().to_owned()
}

/// The names of a request's events, as [`request`] makes them.
fn names(request: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{request}.{i}")).collect()
}

/// A request of `n` valid events named `{request}.0`, `{request}.1`, ...
fn request(request: &str, n: usize) -> Vec<NewEvent> {
    let at: DateTime<Utc> = "2026-11-30T10:00:00Z".parse().unwrap();
    let events: Vec<String> = names(request, n)
        .iter()
        .map(|name| {
            format!(
                r#"{{"type":"visit","url":"https://site.example/{name}","timestamp":"2026-11-30T10:00:00Z","sessionId":"s-{request}"}}"#
            )
        })
        .collect();
    let body = format!(r#"{{"batch":[{}]}}"#, events.join(","));
    let ctx = RequestContext {
        received_at: at,
        user_agent: None,
    };
    let parsed = parse_track_body(body.as_bytes(), &ctx, &Limits::default()).unwrap();
    assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
    parsed.events
}

/// What the sink saw, in order: events per commit, or the error.
type Seen = Arc<Mutex<Vec<Result<usize, FakeError>>>>;

fn options(writers: usize, batch_max: usize, queue_max: usize) -> IngestOptions {
    IngestOptions {
        batch_max,
        queue_max,
        writers,
        ack_timeout: Duration::from_secs(30),
    }
}

fn start_fake(fake: &Fake, options: &IngestOptions) -> (Ingestor<FakeError>, Writers, Seen) {
    let seen = Seen::default();
    let sink = {
        let seen = Arc::clone(&seen);
        move |outcome: Result<Committed<'_, usize>, &FakeError>| {
            let entry = match outcome {
                Ok(c) => {
                    assert_eq!(*c.receipt, c.events.len(), "the sink gets the whole group");
                    Ok(*c.receipt)
                }
                Err(e) => Err(e.clone()),
            };
            seen.lock().unwrap().push(entry);
        }
    };
    let (ingestor, writers) = start(fake.clone(), options, sink).unwrap();
    (ingestor, writers, seen)
}

/// Drops the last handle and waits for the writers and the feeder.
fn shut_down(ingestor: Ingestor<FakeError>, writers: Writers) {
    drop(ingestor);
    writers.join();
}

#[tokio::test]
async fn requests_submitted_during_a_commit_share_the_next_commit() {
    let fake = Fake::default();
    let (ingestor, writers, seen) = start_fake(&fake, &options(1, 1000, 1000));
    fake.hold();
    let first = ingestor.enqueue(request("first", 1)).unwrap();
    fake.wait_for_attempts(1);
    // Eight clients submit at once while the only writer is busy.
    let waiting: Vec<_> = std::thread::scope(|s| {
        let submits: Vec<_> = (0..8)
            .map(|i| {
                let ingestor = ingestor.clone();
                s.spawn(move || ingestor.enqueue(request(&format!("c{i}"), 2)))
            })
            .collect();
        submits
            .into_iter()
            .map(|submit| submit.join().unwrap().unwrap())
            .collect()
    });
    assert_eq!(ingestor.queued(), 17, "every event waits for a commit");
    fake.release();
    first.wait().await.unwrap();
    for pending in waiting {
        pending.wait().await.unwrap();
    }

    let committed = fake.committed();
    assert_eq!(committed.len(), 2, "{committed:?}");
    assert_eq!(committed[0], names("first", 1));
    let mut second = committed[1].clone();
    second.sort();
    let mut expected: Vec<String> = (0..8).flat_map(|i| names(&format!("c{i}"), 2)).collect();
    expected.sort();
    assert_eq!(second, expected, "the eight requests are one commit");
    assert_eq!(ingestor.transactions(), 2);
    shut_down(ingestor, writers);
    assert_eq!(*seen.lock().unwrap(), vec![Ok(1), Ok(16)]);
}

#[tokio::test]
async fn a_group_closes_at_batch_max_but_never_splits_a_request() {
    let fake = Fake::default();
    let (ingestor, writers, _) = start_fake(&fake, &options(1, 4, 1000));
    fake.hold();
    let mut waiting = vec![ingestor.enqueue(request("a", 1)).unwrap()];
    fake.wait_for_attempts(1);
    for (name, n) in [("b", 3), ("c", 3), ("d", 1), ("big", 10)] {
        waiting.push(ingestor.enqueue(request(name, n)).unwrap());
    }
    fake.release();
    for pending in waiting {
        pending.wait().await.unwrap();
    }
    let committed = fake.committed();
    let b_and_c = [names("b", 3), names("c", 3)].concat();
    let d_and_big = [names("d", 1), names("big", 10)].concat();
    assert_eq!(
        committed,
        vec![names("a", 1), b_and_c, d_and_big],
        "a group takes requests while it is under four events, each one whole, \
         so the last one may carry it past the limit"
    );
    shut_down(ingestor, writers);
}

#[tokio::test]
async fn a_refused_request_fails_alone_and_the_rest_of_its_group_commits() {
    let fake = Fake::default();
    let (ingestor, writers, seen) = start_fake(&fake, &options(1, 1000, 1000));
    fake.hold();
    let first = ingestor.enqueue(request("a", 1)).unwrap();
    fake.wait_for_attempts(1);
    let good1 = ingestor.enqueue(request("good1", 2)).unwrap();
    let bad = ingestor.enqueue(request("bad", 1)).unwrap();
    let good2 = ingestor.enqueue(request("good2", 2)).unwrap();
    fake.release();

    first.wait().await.unwrap();
    good1.wait().await.unwrap();
    good2.wait().await.unwrap();
    match bad.wait().await {
        Err(IngestError::Store(FakeError::Refused(name))) => assert_eq!(name, "bad.0"),
        other => panic!("the bad request got {other:?}"),
    }
    let group: Vec<String> = [names("good1", 2), names("bad", 1), names("good2", 2)].concat();
    assert_eq!(
        fake.attempts(),
        vec![
            names("a", 1),
            group,
            names("good1", 2),
            names("bad", 1),
            names("good2", 2)
        ],
        "the failed group is retried one request at a time"
    );
    assert_eq!(
        fake.committed(),
        vec![names("a", 1), names("good1", 2), names("good2", 2)]
    );
    shut_down(ingestor, writers);
    assert_eq!(*seen.lock().unwrap(), vec![Ok(1), Ok(2), Ok(2)]);
}

#[tokio::test]
async fn with_the_database_away_a_group_fails_at_once_without_retries() {
    let fake = Fake::default();
    let (ingestor, writers, seen) = start_fake(&fake, &options(1, 1000, 1000));
    fake.hold();
    fake.set_away(true);
    let first = ingestor.enqueue(request("a", 1)).unwrap();
    fake.wait_for_attempts(1);
    let b = ingestor.enqueue(request("b", 1)).unwrap();
    let c = ingestor.enqueue(request("c", 1)).unwrap();
    fake.release();
    for pending in [first, b, c] {
        assert!(matches!(
            pending.wait().await,
            Err(IngestError::Store(FakeError::Unavailable))
        ));
    }
    assert_eq!(fake.attempts().len(), 2, "one attempt per group");

    fake.set_away(false);
    ingestor.submit(request("d", 1)).await.unwrap();
    shut_down(ingestor, writers);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            Err(FakeError::Unavailable),
            Err(FakeError::Unavailable),
            Ok(1)
        ],
        "the sink hears of each unavailable group, then of the commit"
    );
}

#[tokio::test]
async fn a_commit_not_done_within_the_ack_timeout_is_answered_with_a_timeout() {
    let fake = Fake::default();
    let mut options = options(1, 1000, 1000);
    options.ack_timeout = Duration::from_millis(5);
    let (ingestor, writers, _) = start_fake(&fake, &options);
    fake.hold();
    // The commit is held until after the answer: the timeout is the only
    // way the answer can come.
    assert!(matches!(
        ingestor.submit(request("slow", 1)).await,
        Err(IngestError::AckTimeout)
    ));
    fake.release();
    shut_down(ingestor, writers);
    assert_eq!(
        fake.committed(),
        vec![names("slow", 1)],
        "the events still commit after the timeout"
    );
}

#[tokio::test]
async fn a_full_queue_refuses_a_request_at_once_and_never_commits_it() {
    let fake = Fake::default();
    let (ingestor, writers, _) = start_fake(&fake, &options(1, 1000, 4));
    fake.hold();
    let a = ingestor.enqueue(request("a", 1)).unwrap();
    fake.wait_for_attempts(1);
    let b = ingestor.enqueue(request("b", 3)).unwrap();
    assert_eq!(ingestor.queued(), 4, "events being committed still count");
    assert!(matches!(
        ingestor.enqueue(request("over", 1)),
        Err(IngestError::Overloaded)
    ));
    assert_eq!(ingestor.queued(), 4, "a refused request takes no room");
    fake.release();
    a.wait().await.unwrap();
    b.wait().await.unwrap();
    assert_eq!(ingestor.queued(), 0, "an answered request frees its room");
    ingestor.submit(request("after", 4)).await.unwrap();
    shut_down(ingestor, writers);
    assert_eq!(
        fake.committed(),
        vec![names("a", 1), names("b", 3), names("after", 4)]
    );
}

#[tokio::test]
async fn shutdown_commits_everything_queued_before_the_writers_stop() {
    let fake = Fake::default();
    let (ingestor, writers, seen) = start_fake(&fake, &options(2, 2, 1000));
    fake.hold();
    let mut waiting = Vec::new();
    for name in ["a", "b", "c", "d", "e"] {
        waiting.push(ingestor.enqueue(request(name, 2)).unwrap());
    }
    fake.wait_for_attempts(2);
    drop(ingestor);
    let joined = std::thread::spawn(move || writers.join());
    assert!(
        !joined.is_finished(),
        "the writers cannot stop while a commit is held"
    );
    fake.release();
    joined.join().unwrap();

    for pending in waiting {
        pending.wait().await.unwrap();
    }
    let mut committed: Vec<String> = fake.committed().concat();
    committed.sort();
    let expected: Vec<String> = ["a", "b", "c", "d", "e"]
        .iter()
        .flat_map(|r| names(r, 2))
        .collect();
    assert_eq!(committed, expected);
    let fed: usize = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| *s.as_ref().unwrap())
        .sum();
    assert_eq!(
        fed, 10,
        "the feeder passed on every commit before the join returned"
    );
}

#[tokio::test]
async fn several_writers_commit_every_request_once_and_whole() {
    let fake = Fake::default();
    let (ingestor, writers, _) = start_fake(&fake, &options(3, 7, 10_000));
    let requests: Vec<(String, usize)> = (0..60).map(|i| (format!("r{i}"), 1 + i % 4)).collect();
    let submits = requests
        .iter()
        .map(|(name, n)| ingestor.submit(request(name, *n)));
    for result in futures_util::future::join_all(submits).await {
        result.unwrap();
    }
    shut_down(ingestor, writers);
    let committed = fake.committed();
    for (name, n) in &requests {
        let holding: Vec<&Vec<String>> = committed
            .iter()
            .filter(|c| c.iter().any(|e| e.starts_with(&format!("{name}."))))
            .collect();
        assert_eq!(holding.len(), 1, "{name} is in exactly one commit");
        let ours: Vec<String> = holding[0]
            .iter()
            .filter(|e| e.starts_with(&format!("{name}.")))
            .cloned()
            .collect();
        assert_eq!(ours, names(name, *n), "{name} is whole and in order");
    }
}

#[test]
fn the_stores_unavailable_error_is_shared_with_its_message() {
    let e = StoreError::Unavailable("connection refused".into());
    let copy = e.for_another_request();
    assert!(CommitError::is_unavailable(&copy));
    assert_eq!(copy.to_string(), e.to_string());
}
