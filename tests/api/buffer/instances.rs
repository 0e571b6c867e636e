//! Three instances of the real binary on one Redis and one database, load
//! spread over them, one killed with `kill -9` in the middle.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use beacon_store::testing::TestDatabase;
use serde_json::{json, Value};

use super::redis::{clean_shared, require_shared, unique_prefix, SHARED};
use super::stored_ids;
use crate::on_both_backends;

on_both_backends!(three_instances_with_one_killed_mid_load_store_every_acknowledged_event_once);

const INSTANCES: usize = 3;
/// Every request's event ids and its answer (`None`: no answer).
type Outcomes = Mutex<Vec<(Vec<String>, Option<u16>)>>;
const CLIENTS_PER_INSTANCE: usize = 2;

struct Instance {
    child: Child,
    address: String,
}

fn start(db: &TestDatabase, prefix: &str) -> Instance {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_beacon"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", &db.raw_url)
        .env("BEACON_REDIS_URL", SHARED)
        .env("BEACON_REDIS_PREFIX", prefix)
        .env("BEACON_REDIS_CLAIM_IDLE", "1s")
        .env("BEACON_HTTP_WORKERS", "1")
        .env("BEACON_POOL_SIZE", "3")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the beacon binary starts");
    Instance {
        child,
        address: format!("http://127.0.0.1:{port}"),
    }
}

async fn wait_up(address: &str) {
    let client = crate::helpers::client_builder().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{address}/up")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{address} did not come up");
}

async fn gauge(address: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{address}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

async fn three_instances_with_one_killed_mid_load_store_every_acknowledged_event_once(
    db: &TestDatabase,
) {
    require_shared();
    let prefix = unique_prefix("three");
    // The first one migrates the database; then the others start.
    let mut instances = vec![start(db, &prefix)];
    wait_up(&instances[0].address).await;
    instances.extend((1..INSTANCES).map(|_| start(db, &prefix)));
    for i in &instances {
        wait_up(&i.address).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    // (request ids, answer) of every request.
    let outcomes: Arc<Outcomes> = Arc::default();
    let client = crate::helpers::client_builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut tasks = vec![];
    for (n, instance) in instances.iter().enumerate() {
        for c in 0..CLIENTS_PER_INSTANCE {
            let (client, stop, outcomes) = (client.clone(), stop.clone(), outcomes.clone());
            let url = format!("{}/track", instance.address);
            tasks.push(tokio::spawn(async move {
                let mut seq = 0;
                while !stop.load(Ordering::SeqCst) {
                    seq += 1;
                    let ids: Vec<String> = (0..4).map(|k| format!("i{n}-c{c}-r{seq}-e{k}")).collect();
                    let batch: Vec<Value> = ids
                        .iter()
                        .map(|id| json!({"type": "click", "sessionId": format!("three-{n}-{c}"), "id": id, "data": {"label": "x"}}))
                        .collect();
                    let answer = client
                        .post(&url)
                        .body(json!({ "batch": batch }).to_string())
                        .send()
                        .await
                        .ok()
                        .map(|r| r.status().as_u16());
                    let failed = answer != Some(200);
                    outcomes.lock().unwrap().push((ids, answer));
                    tokio::time::sleep(Duration::from_millis(if failed { 100 } else { 5 })).await;
                }
            }));
        }
    }
    let acked = |outcomes: &Outcomes| {
        outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.1 == Some(200))
            .count()
    };
    while acked(&outcomes) < 150 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Instance 0 dies with whatever it had read and not acknowledged.
    instances[0].child.kill().unwrap();
    instances[0].child.wait().unwrap();
    let killed_at = acked(&outcomes);
    while acked(&outcomes) < killed_at + 300 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let outcomes = Arc::try_unwrap(outcomes)
        .ok()
        .unwrap()
        .into_inner()
        .unwrap();
    // The survivors drain everything, the dead one's pending entries too.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let backlog = gauge(&instances[1].address, "beacon_buffer_backlog_events").await;
        if backlog == 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "backlog still {backlog}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sessions: Vec<String> = (0..INSTANCES)
        .flat_map(|n| (0..CLIENTS_PER_INSTANCE).map(move |c| format!("three-{n}-{c}")))
        .collect();
    let store =
        beacon_store::Store::connect(&db.url, &beacon_store::PoolOptions::default()).unwrap();
    let stored: BTreeMap<String, usize> = stored_ids(&store, &sessions).await;
    let twice: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored twice: {twice:?}");
    let mut missing = vec![];
    for (ids, answer) in &outcomes {
        if *answer == Some(200) {
            missing.extend(ids.iter().filter(|id| !stored.contains_key(*id)));
        }
    }
    assert!(missing.is_empty(), "acknowledged, not stored: {missing:?}");
    let answered: BTreeMap<Option<u16>, usize> =
        outcomes.iter().fold(BTreeMap::new(), |mut m, o| {
            *m.entry(o.1).or_default() += 1;
            m
        });
    eprintln!(
        "three instances, one killed: answers {answered:?}, {} events stored",
        stored.len()
    );
    for i in &mut instances[1..] {
        let _ = Command::new("kill")
            .args(["-TERM", &i.child.id().to_string()])
            .status();
        i.child.wait().unwrap();
    }
    clean_shared(&prefix);
}
