//! Opens many `GET /stream` clients on raw TCP (lean: no HTTP client
//! library, one small buffer per client), waits until every client has
//! received the same tick, and reports how long each tick took to reach
//! them all (the spread between the first and the last arrival of one `id:`).
//! Prints one JSON line. Used by `bench/streams.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool: fail loudly

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Options.
#[derive(Debug, Parser)]
#[command(name = "beacon-streamgen")]
struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:4000")]
    addr: String,
    /// Concurrent stream clients.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Ticks to measure once every client is connected.
    #[arg(long, default_value_t = 5)]
    ticks: usize,
    /// Keep the streams open this many seconds after measuring (so another
    /// load can run beside them).
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
    /// Connections opened at the same time while ramping up.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
}

/// Arrival times of each tick id, across clients.
type Arrivals = Arc<Mutex<BTreeMap<u64, Vec<Instant>>>>;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let arrivals: Arrivals = Arc::default();
    let connected = Arc::new(tokio::sync::Barrier::new(args.clients + 1));
    let gate = Arc::new(Semaphore::new(args.connect_concurrency));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.timeout);

    let mut tasks = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        let (addr, arrivals, connected, gate) = (
            args.addr.clone(),
            Arc::clone(&arrivals),
            Arc::clone(&connected),
            Arc::clone(&gate),
        );
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.unwrap();
            let mut stream = TcpStream::connect(&addr).await.expect("connect");
            let request = format!(
                "GET /stream HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
            );
            stream
                .write_all(request.as_bytes())
                .await
                .expect("send request");
            let mut buf = vec![0u8; 16 * 1024];
            // The response head and the stream-open frame: connected.
            let n = stream.read(&mut buf).await.expect("read");
            assert!(
                buf[..n].starts_with(b"HTTP/1.1 200"),
                "stream refused: {}",
                String::from_utf8_lossy(&buf[..n.min(200)])
            );
            drop(permit);
            // The latest tick's id comes with the opening frames: it tells
            // which ticks are still to come.
            if let Some(id) = last_id(&String::from_utf8_lossy(&buf[..n])) {
                let mut map = arrivals.lock().unwrap();
                map.entry(id).or_default();
            }
            connected.wait().await;
            // Hot loop: scan raw bytes for "id: " and note the arrival time
            // locally; the shared map is touched once per tick, not per read.
            let mut tail: Vec<u8> = Vec::with_capacity(64);
            loop {
                let n = match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let now = Instant::now();
                tail.extend_from_slice(&buf[..n.min(buf.len())]);
                let mut ids = Vec::new();
                let mut start = 0;
                while let Some(pos) = find(&tail[start..], b"id: ") {
                    let from = start + pos + 4;
                    let Some(end) = tail[from..].iter().position(|&b| b == b'\n') else {
                        break;
                    };
                    if let Some(id) = std::str::from_utf8(&tail[from..from + end])
                        .ok()
                        .and_then(|t| t.trim().parse::<u64>().ok())
                    {
                        ids.push(id);
                    }
                    start = from + end;
                }
                // Keep only what may hold the start of a split "id: N" line.
                let keep_from = start.max(tail.len().saturating_sub(32));
                tail.drain(..keep_from);
                if !ids.is_empty() {
                    let mut map = arrivals.lock().unwrap();
                    for id in ids {
                        map.entry(id).or_default().push(now);
                    }
                }
            }
        }));
    }
    connected.wait().await;
    let connect_secs = started.elapsed().as_secs_f64();
    let first_id = arrivals
        .lock()
        .unwrap()
        .keys()
        .next_back()
        .copied()
        .unwrap_or(0)
        + 1;
    let wanted: Vec<u64> = (first_id..first_id + args.ticks as u64).collect();

    // Wait until every client got every measured tick (or time runs out).
    loop {
        let done = {
            let map = arrivals.lock().unwrap();
            wanted
                .iter()
                .all(|id| map.get(id).is_some_and(|v| v.len() >= args.clients))
        };
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (spreads, complete) = {
        let map = arrivals.lock().unwrap();
        let mut spreads = Vec::new();
        let mut complete = true;
        for id in &wanted {
            match map.get(id) {
                Some(v) if v.len() >= args.clients => {
                    let min = v.iter().min().unwrap();
                    let max = v.iter().max().unwrap();
                    spreads.push(max.duration_since(*min).as_secs_f64() * 1000.0);
                }
                _ => complete = false,
            }
        }
        (spreads, complete)
    };
    let mut sorted = spreads.clone();
    sorted.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        sorted
            .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "{{\"clients\":{},\"connect_secs\":{:.2},\"ticks_measured\":{},\"all_clients_got_every_tick\":{},\"spread_ms_p50\":{:.1},\"spread_ms_max\":{:.1}}}",
        args.clients,
        connect_secs,
        spreads.len(),
        complete,
        pick(0.5),
        pick(1.0)
    );
    if args.hold > 0.0 {
        println!("holding");
        tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    }
    for task in tasks {
        task.abort();
    }
}

/// The last `id:` value in `text`.
fn last_id(text: &str) -> Option<u64> {
    text.rmatch_indices("id: ").find_map(|(pos, _)| {
        let rest = &text[pos + 4..];
        rest[..rest.find('\n')?].trim().parse().ok()
    })
}

/// Position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
