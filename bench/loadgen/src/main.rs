#![doc = include_str!("../README.md")]

use std::error::Error;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type BoxError = Box<dyn Error + Send + Sync>;

const UA: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 \
                  (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// `--user-agents mix`: real browsers' user agents and, one in eight, a
/// bot's (which Beacon answers but does not store).
const MIX: [(&str, bool); 24] = [
    (UA, false),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", false),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0", false),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0", false),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", false),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", false),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15", false),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:133.0) Gecko/20100101 Firefox/133.0", false),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", false),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1", false),
    ("Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", false),
    ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", false),
    ("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36", false),
    ("Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", false),
    ("Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0", false),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0", false),
    ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", false),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36", false),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36", false),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", false),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", false),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", true),
    ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36", true),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36", true),
];

/// Posts pixel-shaped /track bodies and prints one JSON line of results.
#[derive(Debug, Parser)]
#[command(name = "beacon-loadgen", about, long_about = None)]
struct Args {
    /// Target URL (plain http).
    #[arg(long, default_value = "http://127.0.0.1:4000/track")]
    url: String,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds to send for (fractions allowed).
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Open loop: total requests per second, latency from the intended send
    /// time. Without it: closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Events per request, cycled through.
    #[arg(long, value_delimiter = ',', default_value = "1,5")]
    batch_sizes: Vec<usize>,
    /// A new session token every this many requests of a connection.
    #[arg(long, default_value_t = 4)]
    session_every: u64,
    /// Prefix of the event ids and session tokens (unique per run).
    #[arg(long, default_value = "run")]
    run_id: String,
    /// Write the bench id of every acknowledged event here, one per line.
    #[arg(long)]
    acked_file: Option<PathBuf>,
    /// Send each event's bench id as the event's `id`, as an API client
    /// with retry-safe ids does (the server then checks it for duplicates).
    /// By default the events have no `id`, like the pixel's: the server
    /// generates one, and the bench id travels in `data.bench_id`.
    #[arg(long)]
    client_ids: bool,
    /// What the bodies contain.
    #[arg(long, value_enum, default_value_t = Payload::Pixel)]
    payload: Payload,
    /// Seconds before a request counts as failed (and its connection is
    /// replaced).
    #[arg(long, default_value_t = 15.0)]
    timeout: f64,
    /// User agents of the sessions: `single` (one browser's) or `mix` (24
    /// real ones, one in eight a bot's; events of bot sessions are left
    /// out of --acked-file, since Beacon does not store them).
    #[arg(long, value_enum, default_value_t = Agents::Single)]
    user_agents: Agents,
    /// The server stores bots (`--keep-bots`, or enrichment off): their
    /// events go to --acked-file like the others.
    #[arg(long)]
    bots_stored: bool,
    /// Send an `X-Forwarded-For` with each session's own client address
    /// (IPv4 and IPv6, in the networks `--write-geoip` covers), as a
    /// trusted proxy would.
    #[arg(long)]
    forwarded: bool,
    /// Write a GeoLite2-City-like `.mmdb` (NETWORKS networks, IPv4 and
    /// IPv6, covering the addresses `--forwarded` sends) to this file and
    /// exit.
    #[arg(long, value_name = "FILE")]
    write_geoip: Option<PathBuf>,
    /// Networks in the `--write-geoip` file.
    #[arg(long, default_value_t = 100_000)]
    geoip_networks: u32,
    /// Runtime threads (1: a single-threaded runtime, the leanest).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Payload {
    /// Valid pixel events.
    Pixel,
    /// The same events without a `type`: parsed and refused (400), never
    /// stored; measures HTTP plus parsing.
    Invalid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Agents {
    /// One desktop Chrome.
    Single,
    /// 24 real user agents, three of them bots.
    Mix,
}

/// The user agent of a session, and whether it is a bot's.
fn agent(plan: &Plan, k: usize, session_no: u64) -> (&'static str, bool) {
    match plan.agents {
        Agents::Single => (UA, false),
        Agents::Mix => MIX[(k as u64 * 7919 + session_no) as usize % MIX.len()],
    }
}

/// The client address of a session for `--forwarded`: two in three IPv4
/// (10.x.y.z, in the /24s the GeoIP file holds), one in three IPv6
/// (2001:db8:x:y::z).
fn client_address(k: usize, session_no: u64) -> String {
    let n = k as u64 * 1_000_003 + session_no;
    if n % 3 == 2 {
        format!(
            "2001:db8:{:x}:{:x}::{:x}",
            (n >> 16) & 0xffff,
            n & 0xffff,
            n % 251 + 1
        )
    } else {
        format!(
            "10.{}.{}.{}",
            (n >> 16) & 0xff,
            (n >> 8) & 0xff,
            n % 251 + 1
        )
    }
}

/// Writes the `--write-geoip` file: `networks` networks, half IPv4 /24s
/// under 10.0.0.0/8, half IPv6 /48s under 2001:db8::/32, each with a City
/// record.
fn write_geoip(path: &PathBuf, networks: u32) -> Result<(), BoxError> {
    let mut writer = mmdb_writer::Writer::builder("GeoLite2-City")
        .ip_version(mmdb_writer::IpVersion::V6)
        .build();
    let places = [
        ("DE", "Land Berlin", "Berlin"),
        ("FR", "Ile-de-France", "Paris"),
        ("US", "California", "San Francisco"),
        ("JP", "Tokyo", "Tokyo"),
        ("BR", "Sao Paulo", "Sao Paulo"),
        ("IN", "Karnataka", "Bengaluru"),
        ("GB", "England", "London"),
    ];
    for i in 0..networks {
        let (country, region, city) = places[i as usize % places.len()];
        let record = serde_json::json!({
            "city": {"names": {"en": city}},
            "country": {"iso_code": country, "names": {"en": country}},
            "subdivisions": [{"names": {"en": region}}]
        });
        let half = i / 2;
        let net: ipnet::IpNet = if i % 2 == 0 {
            format!("10.{}.{}.0/24", (half >> 8) & 0xff, half & 0xff).parse()?
        } else {
            format!("2001:db8:{:x}::/48", half & 0xffff).parse()?
        };
        writer.insert(net, &record)?;
    }
    std::fs::write(path, writer.to_bytes()?)?;
    Ok(())
}

/// What happened to one request, by request index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// 2xx with every event accepted.
    Acked,
    /// 2xx but fewer events accepted than sent.
    Partial,
    Client,
    Server,
    Failed,
}

struct ConnStats {
    hist: Histogram<u64>,
    outcomes: Vec<Outcome>,
    events_sent: u64,
    events_acked: u64,
    late: u64,
}

/// Everything a connection task needs to know, shared read-only.
struct Plan {
    authority: String,
    path: String,
    host_header: String,
    connections: usize,
    rate: Option<f64>,
    duration: Duration,
    batch_sizes: Vec<usize>,
    session_every: u64,
    run_id: String,
    client_ids: bool,
    payload: Payload,
    timeout: Duration,
    epoch_ms: i64,
    agents: Agents,
    bots_stored: bool,
    forwarded: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("beacon-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), BoxError> {
    if let Some(path) = &args.write_geoip {
        return write_geoip(path, args.geoip_networks);
    }
    let uri: Uri = args.url.parse()?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// URLs are supported".into());
    }
    let authority = uri
        .authority()
        .ok_or("the URL has no host")?
        .as_str()
        .to_owned();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    if args.connections == 0 || args.batch_sizes.is_empty() || args.batch_sizes.contains(&0) {
        return Err("need at least one connection and batch sizes of at least 1".into());
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err("--rate must be positive".into());
    }
    let plan = std::sync::Arc::new(Plan {
        host_header: authority.clone(),
        authority,
        path,
        connections: args.connections,
        rate: args.rate,
        duration: Duration::from_secs_f64(args.duration),
        batch_sizes: args.batch_sizes.clone(),
        session_every: args.session_every.max(1),
        run_id: args.run_id.clone(),
        client_ids: args.client_ids,
        payload: args.payload,
        timeout: Duration::from_secs_f64(args.timeout),
        epoch_ms: chrono::Utc::now().timestamp_millis(),
        agents: args.user_agents,
        bots_stored: args.bots_stored,
        forwarded: args.forwarded,
    });

    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    let cpu_before = cpu_seconds();
    let (stats, elapsed) = runtime.block_on(drive(std::sync::Arc::clone(&plan)))?;
    let cpu = cpu_seconds() - cpu_before;
    drop(runtime);

    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let (mut ok, mut c4, mut c5, mut err, mut partial) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut sent, mut acked, mut late) = (0u64, 0u64, 0u64);
    for s in &stats {
        hist.add(&s.hist)?;
        for o in &s.outcomes {
            match o {
                Outcome::Acked => ok += 1,
                Outcome::Partial => {
                    ok += 1;
                    partial += 1;
                }
                Outcome::Client => c4 += 1,
                Outcome::Server => c5 += 1,
                Outcome::Failed => err += 1,
            }
        }
        sent += s.events_sent;
        acked += s.events_acked;
        late += s.late;
    }
    let requests = ok + c4 + c5 + err;
    let secs = elapsed.as_secs_f64();
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let mut line = String::new();
    write!(
        line,
        "{{\"mode\":\"{}\",\"connections\":{},\"rate\":{},\"elapsed_s\":{:.3},\
         \"requests\":{requests},\"req_2xx\":{ok},\"req_4xx\":{c4},\"req_5xx\":{c5},\
         \"req_err\":{err},\"req_partial\":{partial},\"events_sent\":{sent},\
         \"events_acked\":{acked},\"events_per_s\":{:.1},\"req_per_s\":{:.1},\
         \"p50_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3},\"max_ms\":{:.3},\
         \"loadgen_cpu_s\":{:.2},\"late\":{late}}}",
        if plan.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        plan.connections,
        plan.rate.unwrap_or(0.0),
        secs,
        acked as f64 / secs,
        requests as f64 / secs,
        ms(0.50),
        ms(0.99),
        ms(0.999),
        hist.max() as f64 / 1000.0,
        cpu,
    )?;
    println!("{line}");

    if let Some(path) = &args.acked_file {
        write_acked(path, &plan, &stats)?;
    }
    Ok(())
}

/// Connects every connection first, then runs them all from one start time.
async fn drive(plan: std::sync::Arc<Plan>) -> Result<(Vec<ConnStats>, Duration), BoxError> {
    let mut senders = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        senders.push(connect(&plan.authority).await?);
    }
    let start = tokio::time::Instant::now();
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(k, sender)| tokio::spawn(connection(std::sync::Arc::clone(&plan), k, sender, start)))
        .collect();
    let mut stats = Vec::with_capacity(tasks.len());
    for task in tasks {
        stats.push(task.await??);
    }
    Ok((stats, start.elapsed()))
}

async fn connect(authority: &str) -> Result<SendRequest<Full<Bytes>>, BoxError> {
    let stream = TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // The connection ends when the sender is dropped or the peer closes;
        // errors surface on the next request.
        let _ = conn.await;
    });
    Ok(sender)
}

/// One connection's loop: send, wait for the answer, record, repeat.
async fn connection(
    plan: std::sync::Arc<Plan>,
    k: usize,
    mut sender: SendRequest<Full<Bytes>>,
    start: tokio::time::Instant,
) -> Result<ConnStats, BoxError> {
    let mut stats = ConnStats {
        hist: Histogram::new_with_bounds(1, 120_000_000, 3)?,
        outcomes: Vec::new(),
        events_sent: 0,
        events_acked: 0,
        late: 0,
    };
    let deadline = start + plan.duration;
    let mut body = String::with_capacity(4096);
    let mut alive = true;
    for i in 0u64.. {
        // When this request should start: now (closed loop) or on schedule.
        let intended = match plan.rate {
            None => {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    break;
                }
                now
            }
            Some(rate) => {
                let slot = (k as u64 + i * plan.connections as u64) as f64 / rate;
                let at = start + Duration::from_secs_f64(slot);
                if at >= deadline {
                    break;
                }
                let now = tokio::time::Instant::now();
                if at > now {
                    tokio::time::sleep_until(at).await;
                } else if now - at > Duration::from_millis(1) {
                    stats.late += 1;
                }
                at
            }
        };
        if !alive {
            match connect(&plan.authority).await {
                Ok(s) => {
                    sender = s;
                    alive = true;
                }
                Err(_) => {
                    stats.outcomes.push(Outcome::Failed);
                    record(&mut stats.hist, intended);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let size = plan.batch_sizes[(i % plan.batch_sizes.len() as u64) as usize];
        build_body(&mut body, &plan, k, i, size)?;
        stats.events_sent += size as u64;
        let request = Request::builder()
            .method(Method::POST)
            .uri(plan.path.as_str())
            .header(HOST, plan.host_header.as_str())
            .header(CONTENT_TYPE, "text/plain;charset=UTF-8")
            .header(USER_AGENT, UA);
        let request = if plan.forwarded {
            request.header("x-forwarded-for", client_address(k, i / plan.session_every))
        } else {
            request
        }
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))?;
        let answer = tokio::time::timeout(plan.timeout, async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let bytes = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, bytes))
        })
        .await;
        record(&mut stats.hist, intended);
        let outcome = match answer {
            Ok(Ok((status, bytes))) if status.is_success() => {
                let accepted = accepted_count(&bytes).unwrap_or(size as u64);
                stats.events_acked += accepted;
                if accepted == size as u64 {
                    Outcome::Acked
                } else {
                    Outcome::Partial
                }
            }
            Ok(Ok((status, _))) if status.is_client_error() => Outcome::Client,
            Ok(Ok(_)) => Outcome::Server,
            Ok(Err(_)) | Err(_) => {
                alive = false;
                Outcome::Failed
            }
        };
        stats.outcomes.push(outcome);
    }
    Ok(stats)
}

fn record(hist: &mut Histogram<u64>, intended: tokio::time::Instant) {
    let micros = u64::try_from(intended.elapsed().as_micros()).unwrap_or(u64::MAX);
    hist.saturating_record(micros.max(1));
}

/// `"accepted":N` from /track's answer; `None` for other routes.
fn accepted_count(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"accepted\":";
    let at = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits: Vec<u8> = body[at..]
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

fn event_id(run: &str, k: usize, i: u64, j: usize) -> String {
    format!("{run}-{k}-{i}-{j}")
}

/// Writes request `i` of connection `k`: `size` events of one session,
/// shaped like the pixel's (tests/fixtures/batch-pixel.json).
fn build_body(
    out: &mut String,
    plan: &Plan,
    k: usize,
    i: u64,
    size: usize,
) -> Result<(), std::fmt::Error> {
    out.clear();
    let session_no = i / plan.session_every;
    let first_of_session = i.is_multiple_of(plan.session_every);
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
    out.push_str("{\"batch\":[");
    for j in 0..size {
        if j > 0 {
            out.push(',');
        }
        out.push('{');
        if plan.payload == Payload::Pixel {
            let kind = if first_of_session && j == 0 {
                "visit"
            } else {
                ["click", "scroll", "click", "heartbeat"][(i as usize + j) % 4]
            };
            write!(out, "\"type\":\"{kind}\",")?;
            let data = match kind {
                "visit" => {
                    "{\"country\":\"Germany\",\"city\":\"Berlin\",\"region\":\"Land Berlin\",\
                     \"ip\":\"203.0.11...\",\"page_title\":\"Portfolio | Home\",\
                     \"viewport\":\"1440x900\""
                }
                "click" => {
                    "{\"label\":\"Projects\",\"element_type\":\"a\",\"element_text\":\"Projects\""
                }
                "scroll" => "{\"depth\":50",
                _ => "{\"uptime\":30,\"active_time\":12",
            };
            out.push_str("\"data\":");
            out.push_str(data);
            if !plan.client_ids {
                write!(out, ",\"bench_id\":\"{}\"", event_id(&plan.run_id, k, i, j))?;
            }
            out.push_str("},");
        }
        if plan.client_ids || plan.payload != Payload::Pixel {
            write!(out, "\"id\":\"{}\",", event_id(&plan.run_id, k, i, j))?;
        }
        write!(
            out,
            "\"url\":\"https://portfolio.example/\",\
             \"referrer\":\"https://www.google.com/\",\"timestamp\":\"{now}\",\
             \"sessionId\":\"{}-{}-{k}-{session_no}\",\"userAgent\":\"{}\"}}",
            plan.epoch_ms,
            plan.run_id,
            agent(plan, k, session_no).0,
        )?;
    }
    out.push_str("]}");
    Ok(())
}

fn write_acked(path: &PathBuf, plan: &Plan, stats: &[ConnStats]) -> Result<(), BoxError> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (k, s) in stats.iter().enumerate() {
        for (i, outcome) in s.outcomes.iter().enumerate() {
            let bot = agent(plan, k, i as u64 / plan.session_every).1;
            if *outcome != Outcome::Acked || (bot && !plan.bots_stored) {
                continue;
            }
            let size = plan.batch_sizes[i % plan.batch_sizes.len()];
            for j in 0..size {
                writeln!(out, "{}", event_id(&plan.run_id, k, i as u64, j))?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// This process's CPU time (user + system) from /proc, at the usual 100
/// clock ticks per second; 0 where /proc is missing.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th of the whole line.
    let Some(rest) = stat.rsplit(')').next() else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |n: usize| {
        fields
            .get(n)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
}
