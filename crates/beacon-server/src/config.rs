//! The one typed configuration, from flags with environment fallbacks.

use std::net::SocketAddr;
use std::time::Duration;

use beacon_store::DatabaseUrl;
use clap::{Args, Parser, Subcommand};

/// Beacon: self-hostable, real-time web analytics.
///
/// Every setting is a flag with an environment-variable fallback; flags win.
#[derive(Debug, Parser)]
#[command(
    name = "beacon",
    version,
    about = "Beacon: self-hostable, real-time web analytics (serves when no command is given)",
    long_about = None
)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings shared by every command.
    #[command(flatten)]
    pub config: Config,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Maintain the rollups of the historical API.
    Rollup(RollupArgs),
    /// Anomaly detection on a recorded series (no server, no database).
    #[command(subcommand)]
    Anomalies(AnomaliesCommand),
    /// Delete the events that occurred before a day, and the sessions
    /// left without events, once, in small steps, while servers run (the
    /// rollups keep their figures); prints what it deleted.
    Prune(PruneArgs),
    /// Erase one session, its events and what the rollups hold for it
    /// (a data-subject request), while servers run.
    Forget(ForgetArgs),
}

/// `beacon prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Delete what occurred before the start of this UTC day, e.g.
    /// `2026-01-31` (at the latest today).
    #[arg(long, value_parser = parse_day)]
    pub before: chrono::NaiveDate,
}

/// `beacon forget`.
#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// The session's token (the pixel's `sessionId`).
    #[arg(long)]
    pub session: String,
}

/// `beacon anomalies`.
#[derive(Debug, Subcommand)]
pub enum AnomaliesCommand {
    /// Feed a CSV series (`timestamp,value`) to the detector as if it
    /// arrived live; print one JSON line per anomaly it opens.
    Replay(ReplayArgs),
}

/// `beacon anomalies replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The CSV file: header `timestamp,value`, one row per interval.
    #[arg(long)]
    pub input: std::path::PathBuf,
    /// Width of an interval, e.g. `5m` or `1h`; inferred from the rows
    /// when omitted.
    #[arg(long, value_parser = beacon_metrics::anomaly::parse_step)]
    pub step: Option<Duration>,
}

/// `beacon rollup`.
#[derive(Debug, Args)]
pub struct RollupArgs {
    /// Recompute every rollup from the stored events, in one transaction
    /// (ingestion waits meanwhile).
    #[arg(long)]
    pub rebuild: bool,
}

/// Every setting of the server.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address and port to listen on.
    #[arg(
        long,
        env = "BEACON_BIND",
        default_value = "127.0.0.1:4000",
        global = true
    )]
    pub bind: SocketAddr,

    /// Database: postgres://USER[:PASSWORD]@HOST[:PORT]/DB, postgresql://…,
    /// sqlite://PATH (created if missing) or sqlite::memory:.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://beacon.db",
        value_parser = parse_database_url,
        hide_env_values = true,
        global = true
    )]
    pub database_url: DatabaseUrl,

    /// Most open database connections (writers and readers share them).
    #[arg(long, env = "BEACON_POOL_SIZE", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=512), global = true)]
    pub pool_size: u32,

    /// How long to wait for a database connection before answering 503, e.g.
    /// `3s` or `500ms`.
    #[arg(long, env = "BEACON_DB_TIMEOUT", default_value = "3s", value_parser = parse_duration, global = true)]
    pub db_timeout: Duration,

    /// Most events committed in one transaction (group commit). A request is
    /// never split, so 1 means one commit per request.
    #[arg(long, env = "BEACON_BATCH_MAX", default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub batch_max: u32,

    /// Most events waiting for a commit; beyond it /track answers 503 with
    /// Retry-After instead of queueing without bound.
    #[arg(long, env = "BEACON_QUEUE_MAX", default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub queue_max: u32,

    /// Writer threads committing batches (PostgreSQL; SQLite always uses 1).
    /// Two overlap one batch's statements with the other's: on 2 cores they
    /// ingest as much as one writer or more, at more CPU per event (one
    /// writer's batches are larger). More help only when PostgreSQL has
    /// cores of its own to spare (docs/operations.md).
    #[arg(long, env = "BEACON_WRITERS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64), global = true)]
    pub writers: u32,

    /// How long a /track request waits for its commit before answering 503.
    #[arg(long, env = "BEACON_ACK_TIMEOUT", default_value = "10s", value_parser = parse_duration, global = true)]
    pub ack_timeout: Duration,

    /// HTTP worker threads; 0 means one per CPU core.
    #[arg(long, env = "BEACON_HTTP_WORKERS", default_value_t = 0, global = true)]
    pub http_workers: usize,

    /// Origins allowed to post to /track (comma-separated). Unset: any
    /// origin, without credentials (ingestion is public).
    #[arg(
        long,
        env = "BEACON_ALLOWED_ORIGINS",
        value_delimiter = ',',
        global = true
    )]
    pub allowed_origins: Vec<String>,

    /// Origins allowed to read the dashboard endpoints (/stream, …)
    /// (comma-separated). Unset: any origin.
    #[arg(
        long,
        env = "BEACON_DASHBOARD_ORIGINS",
        value_delimiter = ',',
        global = true
    )]
    pub dashboard_origins: Vec<String>,

    /// Per-client-IP limit on /track, as `COUNT/s` or `COUNT/m` (e.g.
    /// `50/s`); beyond it /track answers 429 with Retry-After. Unset: no
    /// limit. Behind a proxy every client has the proxy's address: limit
    /// there instead.
    #[arg(long, env = "BEACON_RATE_LIMIT", value_parser = parse_rate, global = true)]
    pub rate_limit: Option<RateLimit>,

    /// Longest time a client may take to send its request head, and then
    /// its body; slower clients get 408 or are disconnected.
    #[arg(long, env = "BEACON_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration, global = true)]
    pub request_timeout: Duration,

    /// Most open client connections (streams included), over all workers.
    #[arg(long, env = "BEACON_MAX_CONNECTIONS", default_value_t = 15_000, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub max_connections: u32,

    /// Time between two passes that fold acknowledged events into the
    /// rollups behind /stats, the top lists and the sessions' counters and
    /// first/last seen (they lag by about this much), e.g. `1s` or `250ms`.
    #[arg(long, env = "BEACON_ROLLUP_INTERVAL", default_value = "1s", value_parser = parse_duration, global = true)]
    pub rollup_interval: Duration,

    /// Width of the intervals the anomaly detector counts page views in
    /// (whole seconds from a minute to a day, dividing a day). Hidden: the
    /// default suits every site; tests shorten it.
    #[arg(long, env = "BEACON_ANOMALY_INTERVAL", default_value = "5m", value_parser = parse_duration, hide = true, global = true)]
    pub anomaly_interval: Duration,

    /// Keep events this many days (whole UTC days before today's): a
    /// background task deletes older events and sessions, in small steps,
    /// once the rollups hold them; stats and top lists keep answering for
    /// the deleted days. Unset: keep everything.
    #[arg(long, env = "BEACON_RETENTION", value_parser = parse_retention, global = true)]
    pub retention: Option<Retention>,

    /// Time between two runs of the retention task. Hidden: the default
    /// suits every site; tests shorten it.
    #[arg(long, env = "BEACON_RETENTION_INTERVAL", default_value = "60m", value_parser = parse_duration, hide = true, global = true)]
    pub retention_interval: Duration,

    /// URL to POST a JSON alert to when an anomaly opens and when it ends
    /// (see docs/api.md); retried with backoff, never on the ingest path.
    /// Unset: no alerts.
    #[arg(
        long,
        env = "BEACON_ALERT_WEBHOOK",
        hide_env_values = true,
        global = true
    )]
    pub alert_webhook: Option<String>,

    /// First wait before an alert is retried (then twice as long each
    /// time). Hidden: tests shorten it.
    #[arg(long, env = "BEACON_ALERT_BACKOFF", default_value = "1s", value_parser = parse_duration, hide = true, global = true)]
    pub alert_backoff: Duration,

    /// Time between two live snapshots on /stream, e.g. `5s` or `500ms`.
    #[arg(long, env = "BEACON_STREAM_INTERVAL", default_value = "5s", value_parser = parse_duration, global = true)]
    pub stream_interval: Duration,

    /// Most concurrent /stream clients; beyond it /stream answers 503.
    #[arg(
        long,
        env = "BEACON_STREAM_MAX",
        default_value_t = 10_000,
        global = true
    )]
    pub stream_max: usize,

    /// Token that every read endpoint (/stream, /sessions, /events, /stats/*,
    /// /top-*, /anomalies, /metrics) requires, as `Authorization: Bearer <token>` or
    /// `?token=<token>`. Unset: reads are open (a warning is logged).
    #[arg(
        long,
        env = "BEACON_READ_TOKEN",
        value_parser = parse_read_token,
        hide_env_values = true,
        global = true
    )]
    pub read_token: Option<ReadToken>,

    /// Redis to buffer ingestion through (buffered mode): redis://[:PASSWORD@]HOST[:PORT][/DB]
    /// or rediss://… for TLS. /track then answers once Redis holds the
    /// events; every instance stores them from the stream and shows every
    /// instance's events live (docs/operations.md). Unset: events go
    /// straight to the database.
    #[arg(long, env = "BEACON_REDIS_URL", value_parser = parse_redis_url, hide_env_values = true, global = true)]
    pub redis_url: Option<RedisUrl>,

    /// Names every Redis key and group of this deployment
    /// (`PREFIX:events`, `PREFIX:drain`, `PREFIX:dead`, `PREFIX:live-readers`),
    /// so that several deployments share one Redis.
    #[arg(long, env = "BEACON_REDIS_PREFIX", default_value = "beacon", value_parser = parse_redis_prefix, global = true)]
    pub redis_prefix: String,

    /// Most events accepted and not yet stored (buffered mode); beyond it
    /// /track answers 503 with Retry-After. Bounds Redis's memory (about
    /// 0.5 KB per pixel event).
    #[arg(long, env = "BEACON_REDIS_MAX_BACKLOG", default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub redis_max_backlog: u64,

    /// How long an entry stays with a drain consumer that does not
    /// acknowledge it (its instance died) before another claims it.
    /// Hidden: tests shorten it.
    #[arg(long, env = "BEACON_REDIS_CLAIM_IDLE", default_value = "30s", value_parser = parse_duration, hide = true, global = true)]
    pub redis_claim_idle: Duration,

    /// Do not apply pending migrations at start (run `beacon migrate`).
    #[arg(long, env = "BEACON_NO_MIGRATE", global = true)]
    pub no_migrate: bool,

    /// Proxies whose forwarding headers are believed, as comma-separated
    /// addresses or CIDRs (e.g. `10.0.0.0/8,::1`). A request from one of them
    /// has the client address of `Forwarded` / `X-Forwarded-For` (the
    /// rightmost hop that is not itself trusted), its HTTPS from
    /// `X-Forwarded-Proto`, and its country from a CDN header. Unset: none;
    /// every client is its socket's peer and forwarding headers are ignored.
    #[arg(
        long,
        env = "BEACON_TRUSTED_PROXIES",
        default_value = "",
        hide_default_value = true,
        global = true
    )]
    pub trusted_proxies: beacon_enrich::TrustedProxies,

    /// An offline MaxMind DB file (`.mmdb`: GeoLite2 / GeoIP2 Country or
    /// City, DB-IP lite, ...) for visitors' country, region and city; read
    /// memory-mapped and reloaded when the file is replaced. No file ships
    /// with Beacon (docs/operations.md says where to get one). Unset: the
    /// country comes from a trusted CDN header or the pixel's guess.
    #[arg(long, env = "BEACON_GEOIP_DB", global = true)]
    pub geoip_db: Option<std::path::PathBuf>,

    /// Store traffic from bots (crawlers, monitors, previewers, HTTP
    /// libraries, headless browsers), flagged; every figure still excludes
    /// it. Unset: bots are answered as usual but not stored, and counted in
    /// /metrics and on /stream.
    #[arg(long, env = "BEACON_KEEP_BOTS", global = true)]
    pub keep_bots: bool,

    /// Store events as they come, without a profile (no user-agent parsing,
    /// bot filtering, place or visitor id). Hidden: for measuring what
    /// enrichment costs (bench/ingest.sh), not for use.
    #[arg(long, hide = true, global = true)]
    pub no_enrichment: bool,
}

impl Config {
    /// The defaults, as `beacon` with no flags and no environment would use,
    /// but on the given database (handy for tests and embedding).
    pub fn with_database(database_url: DatabaseUrl) -> Self {
        let mut cli = Cli::parse_from(["beacon"]);
        cli.config.database_url = database_url;
        cli.config
    }
}

/// The read token. Its `Debug` is redacted, so printing the configuration
/// cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct ReadToken(String);

impl ReadToken {
    /// The secret itself, for the comparison only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ReadToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadToken(***)")
    }
}

fn parse_read_token(raw: &str) -> Result<ReadToken, String> {
    if raw.trim().is_empty() {
        return Err("the read token must not be empty".to_owned());
    }
    Ok(ReadToken(raw.to_owned()))
}

/// How many whole days events are kept (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    days: u32,
}

impl Retention {
    /// Most days: a century.
    const MAX_DAYS: u32 = 36_500;

    /// The days kept.
    pub fn days(self) -> u32 {
        self.days
    }

    /// The day before which events are deleted at `now`: the UTC day
    /// `days` before today's, so that at least `days` days are kept.
    pub fn cutoff(self, now: chrono::DateTime<chrono::Utc>) -> chrono::NaiveDate {
        (now - chrono::TimeDelta::days(i64::from(self.days))).date_naive()
    }
}

fn parse_retention(raw: &str) -> Result<Retention, String> {
    match raw.trim().parse::<u32>() {
        Ok(days) if (1..=Retention::MAX_DAYS).contains(&days) => Ok(Retention { days }),
        _ => Err(format!(
            "invalid retention {raw:?}: a whole number of days from 1 to {}",
            Retention::MAX_DAYS
        )),
    }
}

fn parse_day(raw: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
        .map_err(|_| format!("invalid day {raw:?} (use YYYY-MM-DD, e.g. 2026-01-31)"))
}

/// The Redis URL. Its `Debug` hides the password, as does [`RedisUrl::masked`].
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// The URL itself, to connect.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password replaced by `***`, for logs.
    pub fn masked(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return "***".to_owned();
        };
        match rest.rsplit_once('@') {
            Some((credentials, host)) => {
                let user = credentials.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:***@{host}")
            }
            None => self.0.clone(),
        }
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisUrl({})", self.masked())
    }
}

fn parse_redis_url(raw: &str) -> Result<RedisUrl, String> {
    let info = redis::IntoConnectionInfo::into_connection_info(raw)
        .map_err(|e| format!("invalid Redis url: {e}"))?;
    let _ = info;
    Ok(RedisUrl(raw.to_owned()))
}

fn parse_redis_prefix(raw: &str) -> Result<String, String> {
    if raw.is_empty() || raw.len() > 100 || raw.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("the Redis prefix must be 1..=100 characters without spaces".to_owned());
    }
    Ok(raw.to_owned())
}

/// A request rate: `count` requests per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per period (also the burst).
    pub count: u32,
    /// The period.
    pub per: Duration,
}

fn parse_rate(raw: &str) -> Result<RateLimit, String> {
    let (count, unit) = raw
        .trim()
        .split_once('/')
        .ok_or_else(|| format!("invalid rate {raw:?} (try 50/s or 600/m)"))?;
    let count: u32 = count
        .trim()
        .parse()
        .ok()
        .filter(|c| *c > 0)
        .ok_or_else(|| format!("invalid rate count in {raw:?}"))?;
    let per = match unit.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        other => return Err(format!("unknown rate unit {other:?} (use s or m)")),
    };
    Ok(RateLimit { count, per })
}

fn parse_database_url(raw: &str) -> Result<DatabaseUrl, String> {
    DatabaseUrl::parse(raw).map_err(|e| e.to_string())
}

/// `250ms`, `5s`, `2m`, or a bare number of seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (number, unit) = match raw.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => raw.split_at(i),
        None => (raw, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {raw:?} (try 5s or 500ms)"))?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        other => return Err(format!("unknown duration unit {other:?} (use ms, s or m)")),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("duration {raw:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        for bad in ["", "0s", "-1s", "5h", "fast"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rates_parse() {
        assert_eq!(
            parse_rate("50/s").unwrap(),
            RateLimit {
                count: 50,
                per: Duration::from_secs(1)
            }
        );
        assert_eq!(parse_rate("600/m").unwrap().per, Duration::from_secs(60));
        for bad in ["", "50", "0/s", "x/s", "5/h"] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn retention_is_a_whole_number_of_days_from_one() {
        assert_eq!(parse_retention("30").unwrap().days(), 30);
        assert_eq!(parse_retention(" 1 ").unwrap().days(), 1);
        for bad in ["0", "-1", "1.5", "30d", "", "36501", "99999999999"] {
            let e = parse_retention(bad).unwrap_err();
            assert!(e.contains("whole number of days"), "{bad:?}: {e}");
        }
        let cli = Cli::try_parse_from(["beacon", "--retention", "0"]).unwrap_err();
        assert!(cli.to_string().contains("from 1 to"), "{cli}");
    }

    #[test]
    fn retention_keeps_whole_days_before_today() {
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let days = |d: &str| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
        let r = parse_retention("30").unwrap();
        assert_eq!(r.cutoff(at("2026-12-14T10:00:00Z")), days("2026-11-14"));
        assert_eq!(r.cutoff(at("2026-12-14T00:00:00Z")), days("2026-11-14"));
        assert_eq!(
            parse_retention("1")
                .unwrap()
                .cutoff(at("2026-12-14T23:59:59Z")),
            days("2026-12-13")
        );
    }

    #[test]
    fn days_parse_as_iso_dates() {
        assert_eq!(parse_day("2026-01-31").unwrap().to_string(), "2026-01-31");
        for bad in [
            "",
            "2026-02-30",
            "31.01.2026",
            "2026-01-31T00:00:00Z",
            "yesterday",
        ] {
            assert!(
                parse_day(bad).unwrap_err().contains("YYYY-MM-DD"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn defaults_match_the_documentation() {
        let cli = Cli::try_parse_from(["beacon"]).unwrap();
        assert!(cli.command.is_none());
        let c = cli.config;
        assert_eq!(c.bind.to_string(), "127.0.0.1:4000");
        assert_eq!(c.database_url.masked(), "sqlite://beacon.db");
        assert_eq!(c.stream_interval, Duration::from_secs(5));
        assert_eq!(c.retention, None, "keep everything");
        assert_eq!(c.retention_interval, Duration::from_secs(3600));
    }

    #[test]
    fn the_redis_url_is_checked_and_its_password_never_printed() {
        let cli = Cli::try_parse_from([
            "beacon",
            "--redis-url",
            "rediss://default:s3cret@redis.example:6380/0",
            "--redis-prefix",
            "site-a",
        ])
        .unwrap();
        let url = cli.config.redis_url.clone().unwrap();
        assert_eq!(url.masked(), "rediss://default:***@redis.example:6380/0");
        assert!(!format!("{:?}", cli.config).contains("s3cret"));
        assert_eq!(cli.config.redis_prefix, "site-a");
        assert!(Cli::try_parse_from(["beacon", "--redis-url", "http://x"]).is_err());
        assert!(Cli::try_parse_from(["beacon", "--redis-prefix", "a b"]).is_err());
        let defaults = Cli::try_parse_from(["beacon"]).unwrap().config;
        assert!(defaults.redis_url.is_none(), "direct mode unless asked");
        assert_eq!(defaults.redis_prefix, "beacon");
    }

    #[test]
    fn flags_work_after_the_subcommand_too() {
        let cli = Cli::try_parse_from([
            "beacon",
            "serve",
            "--bind",
            "0.0.0.0:9000",
            "--batch-max",
            "1",
        ])
        .unwrap();
        assert!(matches!(cli.command, Some(Command::Serve)));
        assert_eq!(cli.config.bind.port(), 9000);
        assert_eq!(cli.config.batch_max, 1);
        assert!(Cli::try_parse_from(["beacon", "--database-url", "mysql://x"]).is_err());
    }
}
