//! Enrichment end to end: client addresses through trusted proxies only,
//! places from a GeoIP file (written here), a trusted CDN's header or the
//! pixel, bots answered but not stored, daily visitor ids, and the per-IP
//! rate limit behind a proxy.

use std::path::{Path, PathBuf};

use beacon_store::testing::TestDatabase;
use beacon_store::SessionRow;
use ipnet::IpNet;
use mmdb_writer::{IpVersion, Writer};
use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    a_trusted_proxys_forwarded_address_is_located_with_the_geoip_file,
    forwarding_headers_from_an_untrusted_peer_are_ignored_and_counted,
    a_cdn_country_counts_only_from_a_trusted_proxy,
    bots_are_answered_like_people_but_not_stored,
    kept_bots_are_stored_flagged,
    a_sessions_later_requests_keep_its_profile_and_a_bot_cannot_borrow_it,
    one_person_in_two_tabs_has_one_visitor_id,
    the_rate_limit_applies_to_each_client_behind_a_proxy,
    hostile_user_agents_and_forwarding_headers_never_cost_an_event,
);

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 \
     (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

/// A GeoLite2-City-like file: one IPv4 and one IPv6 network.
pub fn write_city_db(dir: &Path) -> PathBuf {
    let city = |iso: &str, region: &str, city: &str| {
        json!({
            "city": {"names": {"en": city}},
            "country": {"iso_code": iso, "names": {"en": "x"}},
            "subdivisions": [{"iso_code": "X", "names": {"en": region}}]
        })
    };
    let mut writer = Writer::builder("GeoLite2-City")
        .ip_version(IpVersion::V6)
        .build();
    for (net, record) in [
        ("198.51.100.0/24", city("DE", "Land Berlin", "Berlin")),
        ("2001:db8:1::/48", city("JP", "Tokyo", "Tokyo")),
    ] {
        writer
            .insert(net.parse::<IpNet>().unwrap(), &record)
            .unwrap();
    }
    let path = dir.join("city.mmdb");
    std::fs::write(&path, writer.to_bytes().unwrap()).unwrap();
    path
}

fn visit(session: &str, user_agent: &str) -> String {
    json!({"type": "visit", "sessionId": session, "url": "https://site.example/",
           "userAgent": user_agent})
    .to_string()
}

async fn session(app: &TestApp, token: &str) -> Option<SessionRow> {
    let (store, token) = (app.store.clone(), token.to_owned());
    tokio::task::spawn_blocking(move || store.session(&token).unwrap())
        .await
        .unwrap()
}

/// How many events `/events` lists for a session.
async fn stored_events(app: &TestApp, token: &str) -> usize {
    let page: Value = app
        .get(&format!("/events?session={token}"))
        .await
        .json()
        .await
        .unwrap();
    page["events"].as_array().unwrap().len()
}

async fn post(app: &TestApp, body: String, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app.client.post(format!("{}/track", app.address)).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

async fn metric(app: &TestApp, line_start: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in /metrics:\n{text}"))
}

async fn a_trusted_proxys_forwarded_address_is_located_with_the_geoip_file(db: &TestDatabase) {
    let dir = tempfile::tempdir().unwrap();
    let geoip = write_city_db(dir.path());
    let app = spawn_app_with(db, |c| {
        c.trusted_proxies = "127.0.0.1/32".parse().unwrap();
        c.geoip_db = Some(geoip);
    });
    let cases = [
        ("v4", "198.51.100.7", ("DE", "Land Berlin", "Berlin")),
        ("v6", "[2001:db8:1::9]:4711", ("JP", "Tokyo", "Tokyo")),
    ];
    for (token, hop, _) in &cases {
        // The proxy appends the client; the leftmost hop is the client's
        // own claim, ignored.
        let xff = format!("203.0.113.99, {hop}");
        let response = post(&app, visit(token, FIREFOX), &[("X-Forwarded-For", &xff)]).await;
        assert_eq!(response.status(), 200, "{token}");
    }
    for (token, _, (country, region, city)) in cases {
        let s = session(&app, token).await.unwrap();
        assert_eq!(
            (s.country.as_deref(), s.region.as_deref(), s.city.as_deref()),
            (Some(country), Some(region), Some(city)),
            "{token}"
        );
        assert_eq!(
            (s.browser.as_deref(), s.device.as_deref()),
            (Some("Firefox"), Some("desktop"))
        );
    }
    // Not in the file, and the pixel guessed: its guess, as a code.
    let guessed = json!({"type": "visit", "sessionId": "guess", "url": "https://site.example/",
                         "userAgent": IPHONE, "data": {"country": "France", "city": "Lyon"}});
    let response = post(
        &app,
        guessed.to_string(),
        &[("X-Forwarded-For", "192.0.2.1")],
    )
    .await;
    assert_eq!(response.status(), 200);
    let s = session(&app, "guess").await.unwrap();
    assert_eq!(
        (s.country.as_deref(), s.city.as_deref(), s.device.as_deref()),
        (Some("FR"), Some("Lyon"), Some("mobile"))
    );
    app.stop().await;
}

async fn forwarding_headers_from_an_untrusted_peer_are_ignored_and_counted(db: &TestDatabase) {
    let dir = tempfile::tempdir().unwrap();
    let geoip = write_city_db(dir.path());
    let app = spawn_app_with(db, |c| c.geoip_db = Some(geoip));
    for (i, header) in ["X-Forwarded-For", "X-Real-IP"].into_iter().enumerate() {
        let token = format!("spoof-{i}");
        let response = post(&app, visit(&token, FIREFOX), &[(header, "198.51.100.7")]).await;
        assert_eq!(response.status(), 200);
        let s = session(&app, &token).await.unwrap();
        assert_eq!(
            s.country, None,
            "{header} from an untrusted peer is not believed"
        );
    }
    let forwarded = post(
        &app,
        visit("spoof-2", FIREFOX),
        &[("Forwarded", "for=198.51.100.7;proto=https")],
    )
    .await;
    assert_eq!(forwarded.status(), 200);
    assert_eq!(
        metric(&app, "beacon_forwarded_headers_ignored_total ").await,
        3.0
    );
    app.stop().await;
}

async fn a_cdn_country_counts_only_from_a_trusted_proxy(db: &TestDatabase) {
    let untrusted = spawn_app(db);
    let response = post(
        &untrusted,
        visit("cdn-1", FIREFOX),
        &[("CF-IPCountry", "CH")],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(session(&untrusted, "cdn-1").await.unwrap().country, None);
    untrusted.stop().await;

    let trusted = spawn_app_with(db, |c| c.trusted_proxies = "127.0.0.0/8".parse().unwrap());
    for (token, header, value, want) in [
        ("cdn-2", "CF-IPCountry", "CH", Some("CH")),
        ("cdn-3", "CloudFront-Viewer-Country", "nz", Some("NZ")),
        ("cdn-4", "X-Vercel-IP-Country", "BR", Some("BR")),
        ("cdn-5", "CF-IPCountry", "XX", None),
        ("cdn-6", "CF-IPCountry", "T1", None),
        ("cdn-7", "CF-IPCountry", "Switzerland", None),
    ] {
        let response = post(&trusted, visit(token, FIREFOX), &[(header, value)]).await;
        assert_eq!(response.status(), 200, "{token}");
        let s = session(&trusted, token).await.unwrap();
        assert_eq!(s.country.as_deref(), want, "{header}: {value}");
    }
    trusted.stop().await;
}

async fn bots_are_answered_like_people_but_not_stored(db: &TestDatabase) {
    let app = spawn_app(db);
    let batch = |token: &str, user_agent: &str| {
        json!({"batch": [
            {"type": "visit", "sessionId": token, "url": "https://site.example/", "userAgent": user_agent},
            {"type": "click", "sessionId": token, "data": {"label": "x"}, "userAgent": user_agent}
        ]})
        .to_string()
    };
    let mut answers = Vec::new();
    for (token, user_agent) in [
        ("person", FIREFOX),
        ("crawler", GOOGLEBOT),
        ("headless", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36"),
        ("library", "python-requests/2.32.3"),
    ] {
        let response = post(&app, batch(token, user_agent), &[]).await;
        assert_eq!(response.status(), 200, "{token}");
        let answer: Value = response.json().await.unwrap();
        answers.push(answer);
        let stored = session(&app, token).await;
        assert_eq!(stored.is_some(), token == "person", "{token}");
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "every answer is the same: {answers:?}"
    );
    // No user agent at all (neither header nor body) is a bot too.
    let bare = reqwest::Client::new()
        .post(format!("{}/track", app.address))
        .body(json!({"type": "visit", "sessionId": "bare"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 200);
    assert!(session(&app, "bare").await.is_none());
    assert_eq!(
        metric(&app, "beacon_events_dropped_total{reason=\"bot\"} ").await,
        7.0
    );
    app.stop().await;
}

async fn kept_bots_are_stored_flagged(db: &TestDatabase) {
    let app = spawn_app_with(db, |c| c.keep_bots = true);
    let response = post(&app, visit("crawler", GOOGLEBOT), &[]).await;
    assert_eq!(response.status(), 200);
    let s = session(&app, "crawler").await.unwrap();
    assert!(s.bot, "flagged");
    let person = post(&app, visit("person", FIREFOX), &[]).await;
    assert_eq!(person.status(), 200);
    assert!(!session(&app, "person").await.unwrap().bot);
    assert_eq!(
        metric(&app, "beacon_events_dropped_total{reason=\"bot\"} ").await,
        0.0,
        "kept, so not dropped"
    );
    app.stop().await;
}

/// The profile is computed once per session (and cached): later requests
/// of the session reuse it, as the database keeps its first; a request
/// with the session's token and a bot's user agent is still a bot's.
async fn a_sessions_later_requests_keep_its_profile_and_a_bot_cannot_borrow_it(db: &TestDatabase) {
    let app = spawn_app(db);
    let click = |user_agent: &str| {
        json!({"type": "click", "sessionId": "tab", "url": "https://site.example/",
               "data": {"label": "x"}, "userAgent": user_agent})
        .to_string()
    };
    assert_eq!(post(&app, visit("tab", FIREFOX), &[]).await.status(), 200);
    let first = session(&app, "tab").await.unwrap();
    assert_eq!(first.browser.as_deref(), Some("Firefox"));
    assert!(first.visitor_id.is_some());

    assert_eq!(post(&app, click(GOOGLEBOT), &[]).await.status(), 200);
    assert_eq!(
        stored_events(&app, "tab").await,
        1,
        "the bot's click is dropped"
    );
    assert_eq!(
        metric(&app, "beacon_events_dropped_total{reason=\"bot\"} ").await,
        1.0
    );

    assert_eq!(post(&app, click(FIREFOX), &[]).await.status(), 200);
    assert_eq!(stored_events(&app, "tab").await, 2);
    let later = session(&app, "tab").await.unwrap();
    assert_eq!(later.visitor_id, first.visitor_id);
    assert_eq!(later.browser, first.browser);
    app.stop().await;
}

async fn one_person_in_two_tabs_has_one_visitor_id(db: &TestDatabase) {
    let app = spawn_app_with(db, |c| c.trusted_proxies = "127.0.0.1".parse().unwrap());
    let from = |ip: &'static str| [("X-Forwarded-For", ip)];
    for (token, user_agent, ip) in [
        ("tab-1", FIREFOX, "198.51.100.7"),
        ("tab-2", FIREFOX, "198.51.100.7"),
        ("phone", IPHONE, "198.51.100.7"),
        ("neighbour", FIREFOX, "198.51.100.8"),
    ] {
        let response = post(&app, visit(token, user_agent), &from(ip)).await;
        assert_eq!(response.status(), 200, "{token}");
    }
    let id = |s: SessionRow| s.visitor_id.expect("every new session has a visitor id");
    let tab_1 = id(session(&app, "tab-1").await.unwrap());
    assert!(tab_1 < 0, "visitor ids are negative: {tab_1}");
    assert_eq!(id(session(&app, "tab-2").await.unwrap()), tab_1, "two tabs");
    assert_ne!(
        id(session(&app, "phone").await.unwrap()),
        tab_1,
        "another device"
    );
    assert_ne!(
        id(session(&app, "neighbour").await.unwrap()),
        tab_1,
        "another address"
    );
    app.stop().await;
}

async fn the_rate_limit_applies_to_each_client_behind_a_proxy(db: &TestDatabase) {
    let app = spawn_app_with(db, |c| {
        c.trusted_proxies = "127.0.0.1".parse().unwrap();
        c.rate_limit = Some(beacon_server::config::RateLimit {
            count: 1,
            per: std::time::Duration::from_secs(60),
        });
    });
    let from = |ip: &'static str| [("X-Forwarded-For", ip)];
    let first = post(&app, visit("a-1", FIREFOX), &from("198.51.100.7")).await;
    assert_eq!(first.status(), 200);
    let again = post(&app, visit("a-2", FIREFOX), &from("198.51.100.7")).await;
    assert_eq!(again.status(), 429, "the same client, over its limit");
    let other = post(&app, visit("b-1", FIREFOX), &from("198.51.100.8")).await;
    assert_eq!(other.status(), 200, "another client behind the same proxy");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_address_reaches_the_database_or_the_log_sqlite() {
    no_client_address_reaches_the_database_or_the_log(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_address_reaches_the_database_or_the_log_postgres() {
    no_client_address_reaches_the_database_or_the_log(Db::Postgres).await;
}

/// Traffic from known addresses through every path: the socket's peer
/// (requests are sent from 127.0.0.3 and 127.0.0.4), a trusted proxy's
/// `X-Forwarded-For`, `Forwarded` and `X-Real-IP`, the same headers from an
/// untrusted peer, and the pixel's `data.ip`; then a full dump of the
/// database and the server's debug log are searched for every address,
/// whole and in part.
async fn no_client_address_reaches_the_database_or_the_log(db: Db) {
    let Some(database) = db.fresh() else { return };
    let dir = tempfile::tempdir().unwrap();
    let geoip = write_city_db(dir.path());
    let log_path = dir.path().join("beacon.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = crate::shutdown::start_binary_with(
        &database,
        "debug",
        std::process::Stdio::from(log),
        &[
            "--trusted-proxies",
            "127.0.0.3",
            "--geoip-db",
            geoip.to_str().unwrap(),
            "--keep-bots",
        ],
    );
    crate::shutdown::wait_until_up(&server).await;
    let from = |local: [u8; 4]| {
        client_builder()
            .local_address(std::net::IpAddr::from(local))
            .build()
            .unwrap()
    };
    let (proxy, stranger) = (from([127, 0, 0, 3]), from([127, 0, 0, 4]));
    let track = format!("{}/track", server.address);
    let pixel = |token: &str| {
        json!({"type": "visit", "sessionId": token, "url": "https://site.example/",
               "userAgent": FIREFOX,
               "data": {"ip": "203.0.113.77", "ip_address": "203.0.113.78", "country": "Germany"}})
        .to_string()
    };
    let headers: [(&str, &str); 4] = [
        ("X-Forwarded-For", "192.0.2.77, 198.51.100.77"),
        ("Forwarded", "for=\"[2001:db8:1::77]:4711\";proto=https"),
        ("X-Real-IP", "198.51.100.78"),
        ("CF-IPCountry", "CH"),
    ];
    for (i, client) in [&proxy, &stranger].into_iter().enumerate() {
        for (j, (name, value)) in headers.iter().enumerate() {
            let response = client
                .post(&track)
                .header(*name, *value)
                .body(pixel(&format!("s-{i}-{j}")))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{name} via client {i}");
        }
        // And a bot, kept, from each.
        let response = client
            .post(&track)
            .header("User-Agent", GOOGLEBOT)
            .header("X-Forwarded-For", "198.51.100.79")
            .body(json!({"type": "visit", "sessionId": format!("bot-{i}")}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // Everything is committed once answered; stop the server to flush its log.
    crate::shutdown::signal(&server, "TERM");
    let _ = server.child.wait();

    let dump = match db {
        Db::Sqlite => {
            let path = database.raw_url.trim_start_matches("sqlite://");
            let mut bytes = Vec::new();
            for suffix in ["", "-wal", "-shm"] {
                if let Ok(b) = std::fs::read(format!("{path}{suffix}")) {
                    bytes.extend(b);
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Db::Postgres => {
            let out = std::process::Command::new("pg_dump")
                .args(["--data-only", "--no-owner", &database.raw_url])
                .output()
                .expect("pg_dump runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }
    };
    assert!(
        dump.contains("s-0-0") && dump.contains("bot-1"),
        "the dump holds the sessions"
    );
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("trusted"),
        "the spoofing warning is logged: {log}"
    );
    for needle in [
        "127.0.0.3",
        "127.0.0.4",
        "192.0.2.77",
        "198.51.100.77",
        "198.51.100.78",
        "198.51.100.79",
        "198.51.100.",
        "2001:db8:1::77",
        "2001:db8:1:",
        "203.0.113.77",
        "203.0.113.78",
        "203.0.113.",
    ] {
        assert!(!dump.contains(needle), "the database holds {needle}");
        assert!(!log.contains(needle), "the log holds {needle}: {log}");
    }
}

/// A GeoIP file that is missing, empty, truncated or not a MaxMind DB
/// stops the server at start with a message naming the file; so does a
/// trusted-proxy list with a bad entry.
#[test]
fn a_bad_geoip_file_or_proxy_list_stops_the_server_at_start_naming_it() {
    let database = Db::Sqlite.fresh().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(write_city_db(dir.path())).unwrap();
    let missing = dir.path().join("missing.mmdb");
    let empty = dir.path().join("empty.mmdb");
    std::fs::write(&empty, b"").unwrap();
    let truncated = dir.path().join("truncated.mmdb");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let garbage = dir.path().join("garbage.mmdb");
    std::fs::write(&garbage, vec![0x5a; 4096]).unwrap();
    let run = |flags: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_beacon"))
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--database-url",
                &database.raw_url,
            ])
            .args(flags)
            .env("RUST_LOG", "error")
            .output()
            .expect("the binary runs")
    };
    for path in [&missing, &empty, &truncated, &garbage] {
        let path = path.to_str().unwrap();
        let out = run(&["--geoip-db", path]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{path}: starts anyway");
        assert!(
            stderr.contains(path),
            "{path}: the message names it: {stderr}"
        );
    }
    let out = run(&["--trusted-proxies", "10.0.0.0/8,not-a-network"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("not-a-network"), "{stderr}");
}

/// User agents that are huge, binary or crafted against regex engines, and
/// forwarding headers full of garbage, hundreds of hops, zones and
/// brackets: every event is answered and stored (bots kept, so that
/// each one can be found), and the server keeps answering.
async fn hostile_user_agents_and_forwarding_headers_never_cost_an_event(db: &TestDatabase) {
    let dir = tempfile::tempdir().unwrap();
    let geoip = write_city_db(dir.path());
    let app = spawn_app_with(db, |c| {
        c.trusted_proxies = "127.0.0.1, ::1".parse().unwrap();
        c.geoip_db = Some(geoip);
        c.keep_bots = true;
    });
    let hops = (0..500)
        .map(|i| format!("198.51.100.{}", i % 250))
        .collect::<Vec<_>>()
        .join(", ");
    let user_agents = [
        String::new(),
        "Mozilla/5.0 ".repeat(900),
        "\u{0}\u{1}\u{ff}\u{d7ff} binary".to_owned(),
        format!("{}!", "a".repeat(5000)),
        format!("Mozilla/5.0 ({}", "(".repeat(3000)),
        "Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1; Trident/5.0)".repeat(100),
    ];
    let forwarded: [(&str, &str); 9] = [
        ("X-Forwarded-For", "garbage, , ,,, not-an-ip"),
        ("X-Forwarded-For", hops.as_str()),
        ("X-Forwarded-For", "fe80::1%eth0, [2001:db8:1::5]:443"),
        ("X-Forwarded-For", "[2001:db8:1::5"),
        (
            "Forwarded",
            "for=\"[2001:db8:1::6]\";proto=https;by=_hidden, for=unknown",
        ),
        ("Forwarded", "for=;for=;;;===,proto"),
        ("X-Real-IP", "999.999.999.999"),
        ("CF-IPCountry", "Z9"),
        ("X-Forwarded-Proto", "gopher"),
    ];
    let mut sent = Vec::new();
    for (i, user_agent) in user_agents.iter().enumerate() {
        let token = format!("ua-{i}");
        let body = json!({"type": "visit", "sessionId": token, "url": "https://site.example/",
                          "userAgent": user_agent});
        let response = post(&app, body.to_string(), &[]).await;
        assert_eq!(response.status(), 200, "user agent {i}");
        sent.push(token);
    }
    for (i, (name, value)) in forwarded.iter().enumerate() {
        let token = format!("fwd-{i}");
        let response = post(&app, visit(&token, FIREFOX), &[(name, value)]).await;
        assert_eq!(response.status(), 200, "{name}: {value}");
        sent.push(token);
    }
    for token in &sent {
        assert!(session(&app, token).await.is_some(), "{token} is stored");
    }
    let up = app.get("/up").await;
    assert_eq!(up.status(), 200, "still answering");
    app.stop().await;
}
