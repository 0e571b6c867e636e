//! Enrichment on the ingest path: who the client is (address behind
//! trusted proxies, HTTPS), what its user agent says (browser, system,
//! device, bot), where it is (GeoIP, a trusted CDN's header, the pixel's
//! own guess) and its daily visitor id. The work itself is in
//! `beacon-enrich`; this module applies it to a request and counts what it
//! filtered. Paid once per distinct user agent (the parser's cache) and once
//! per session (the profile, kept in a bounded cache of recent sessions),
//! never per event: a session's later requests reuse the profile of its
//! first, which is also the one the database keeps for it.

mod salts;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use actix_web::HttpRequest;
use beacon_enrich::{
    cdn_country, client_addr, country_code, visitor_id, ClientAddr, ForwardingHeaders, GeoIp,
    Location, Salt, TrustedProxies, UserAgents,
};
use beacon_model::{EventKind, NewEvent, VisitorProfile};
use chrono::{DateTime, Utc};

pub use salts::{day_of, start as start_salts, Salts};

/// Distinct user agents whose verdicts are kept.
pub const USER_AGENT_CACHE: usize = 10_000;
/// Recent sessions whose profiles are kept (about 450 bytes each with the
/// profile, estimated): a session's later requests skip the parser, the
/// GeoIP lookup and the visitor id's hash.
pub const SESSION_CACHE: usize = 16_384;

/// A session's profile as computed for its first request; `None`: a bot
/// not kept. Keyed by a hash of (session token, user agent) under this
/// process's random key, so that a request with the session's token but
/// another user agent is classified afresh (a bot cannot borrow a person's
/// verdict) and nobody can aim a collision.
type SessionProfiles = quick_cache::sync::Cache<u64, Option<Arc<VisitorProfile>>>;

/// The process's parser: its patterns take about a second to compile, so
/// every application of the process (tests start many) shares one.
fn user_agents() -> Result<Arc<UserAgents>, beacon_enrich::EnrichError> {
    static AGENTS: Mutex<Option<Arc<UserAgents>>> = Mutex::new(None);
    let mut agents = AGENTS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(agents) = &*agents {
        return Ok(Arc::clone(agents));
    }
    let built = Arc::new(UserAgents::new(USER_AGENT_CACHE)?);
    *agents = Some(Arc::clone(&built));
    Ok(built)
}

/// What a request's events became.
pub struct Enriched {
    /// The events to store, each with its profile.
    pub events: Vec<NewEvent>,
    /// Events dropped as bots (answered as if stored).
    pub bots: usize,
}

/// What a request tells about every new session in it.
struct Context {
    place: Option<Location>,
    salt: Option<Arc<Salt>>,
}

/// The enrichment of the ingest path, built once at start and shared.
pub struct Enrichment {
    trusted: TrustedProxies,
    agents: Arc<UserAgents>,
    geo: Option<GeoIp>,
    keep_bots: bool,
    /// `--no-enrichment`: events are stored as they come.
    off: bool,
    salts: Arc<Salts>,
    sessions: SessionProfiles,
    session_key: RandomState,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    bots: AtomicU64,
    spoofed: AtomicU64,
    spoofed_warned: AtomicBool,
    no_salt: AtomicU64,
    no_salt_warned: AtomicBool,
    geoip_reload_failures: AtomicU64,
}

impl Enrichment {
    /// Compiles the user-agent patterns (once per process) and opens the
    /// GeoIP database, if one is configured.
    pub fn new(
        trusted: TrustedProxies,
        geoip: Option<&std::path::Path>,
        keep_bots: bool,
        off: bool,
        salts: Arc<Salts>,
    ) -> Result<Self, beacon_enrich::EnrichError> {
        let geo = geoip.map(GeoIp::open).transpose()?;
        Ok(Self {
            trusted,
            agents: user_agents()?,
            geo,
            keep_bots,
            off,
            salts,
            sessions: SessionProfiles::new(SESSION_CACHE),
            session_key: RandomState::new(),
            counters: Counters::default(),
        })
    }

    /// The salts the visitor ids are keyed with.
    pub fn salts(&self) -> &Arc<Salts> {
        &self.salts
    }

    /// The GeoIP database, when one is configured.
    pub fn geoip(&self) -> Option<&GeoIp> {
        self.geo.as_ref()
    }

    /// Counts a failed reload of the GeoIP database (the previous one
    /// stays in use).
    pub fn geoip_reload_failed(&self) {
        self.counters
            .geoip_reload_failures
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The client behind `req`: its address (through trusted proxies only)
    /// and whether it reached us over HTTPS. Forwarding headers from a peer
    /// that is not trusted are ignored and counted; the first time, a
    /// warning says what that usually means.
    pub fn client(&self, req: &HttpRequest) -> ClientAddr {
        let headers = req.headers();
        let all = |name: &str| -> Vec<&str> {
            headers
                .get_all(name)
                .filter_map(|v| v.to_str().ok())
                .collect()
        };
        let one = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let forwarding = ForwardingHeaders {
            forwarded: all("forwarded"),
            x_forwarded_for: all("x-forwarded-for"),
            x_real_ip: one("x-real-ip"),
            x_forwarded_proto: one("x-forwarded-proto"),
        };
        // A peer is always known on TCP; tests' in-process requests have none.
        let peer = req
            .peer_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        let client = client_addr(peer, req.app_config().secure(), &forwarding, &self.trusted);
        if client.spoofed {
            self.counters.spoofed.fetch_add(1, Ordering::Relaxed);
            if !self.counters.spoofed_warned.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "forwarding headers (X-Forwarded-For, Forwarded, X-Real-IP) arrive from a peer \
                     that is not a trusted proxy and are ignored; if Beacon runs behind a proxy, \
                     list it in --trusted-proxies, or every visitor has the proxy's address \
                     (counted in beacon_forwarded_headers_ignored_total; logged once)"
                );
            }
        }
        client
    }

    /// Gives each event its profile, computed once per session (see
    /// [`SESSION_CACHE`]), and drops bots unless they are kept.
    pub fn enrich(
        &self,
        client: &ClientAddr,
        req: &HttpRequest,
        events: Vec<NewEvent>,
        now: DateTime<Utc>,
    ) -> Enriched {
        if self.off {
            return Enriched { events, bots: 0 };
        }
        let mut profiles: HashMap<(&str, Option<&str>), Option<Arc<VisitorProfile>>> =
            HashMap::new();
        // What a new session needs from the request, found once, and only
        // when one of its sessions is not in the cache.
        let mut context = None;
        let mut bots = 0;
        let mut assigned = Vec::with_capacity(events.len());
        for e in &events {
            let key = (e.session().as_str(), e.user_agent());
            let profile = profiles.entry(key).or_insert_with(|| {
                let cached = self.session_key.hash_one(key);
                if let Some(profile) = self.sessions.get(&cached) {
                    return profile;
                }
                let context = context.get_or_insert_with(|| self.context(client, req, now));
                let profile = self.profile(context, client, &events, e);
                self.sessions.insert(cached, profile.clone());
                profile
            });
            match profile {
                Some(p) => assigned.push(Some(Arc::clone(p))),
                None => {
                    bots += 1;
                    assigned.push(None);
                }
            }
        }
        drop(profiles);
        let events = events
            .into_iter()
            .zip(assigned)
            .filter_map(|(e, p)| p.map(|p| e.with_profile(p)))
            .collect();
        self.counters.bots.fetch_add(bots as u64, Ordering::Relaxed);
        Enriched { events, bots }
    }

    /// The request's place (GeoIP, else a trusted CDN's header) and the
    /// day's salt.
    fn context(&self, client: &ClientAddr, req: &HttpRequest, now: DateTime<Utc>) -> Context {
        // A CDN's header is believed from a trusted peer only (that is
        // the CDN, or the proxy behind it), whatever else it forwarded.
        let peer_trusted = req
            .peer_addr()
            .is_some_and(|peer| self.trusted.contains(peer.ip()));
        let cdn = if peer_trusted {
            let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
            cdn_country(
                header("cf-ipcountry"),
                header("cloudfront-viewer-country"),
                header("x-vercel-ip-country"),
            )
        } else {
            None
        };
        let place = self
            .geo
            .as_ref()
            .and_then(|geo| geo.lookup(client.ip))
            .filter(|l| l.country.is_some())
            .or_else(|| {
                cdn.map(|country| Location {
                    country: Some(country),
                    region: None,
                    city: None,
                })
            });
        let salt = self.salts.get(day_of(now));
        if salt.is_none() {
            self.counters.no_salt.fetch_add(1, Ordering::Relaxed);
            if !self.counters.no_salt_warned.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "no visitor salt for today is held (the database was unreachable since \
                     yesterday?): sessions are stored without a visitor id until it is \
                     (counted in beacon_visitor_salt_missing_total; logged once)"
                );
            }
        }
        Context { place, salt }
    }

    /// The profile of the session of `e`, new to this instance; `None` for
    /// a bot that is not kept.
    fn profile(
        &self,
        context: &Context,
        client: &ClientAddr,
        events: &[NewEvent],
        e: &NewEvent,
    ) -> Option<Arc<VisitorProfile>> {
        let agent = self.agents.classify(e.user_agent());
        if agent.bot.is_some() && !self.keep_bots {
            return None;
        }
        let location = context
            .place
            .clone()
            .or_else(|| pixel_location(events, e.session().as_str()))
            .unwrap_or(Location {
                country: None,
                region: None,
                city: None,
            });
        let visitor = context.salt.as_ref().map(|salt| {
            visitor_id(
                salt,
                &site_host(e.url()).to_ascii_lowercase(),
                client.ip,
                e.user_agent().unwrap_or(""),
            )
        });
        Some(Arc::new(VisitorProfile {
            visitor_id: visitor,
            browser: agent.browser.clone(),
            browser_version: agent.browser_version.clone(),
            os: agent.os.clone(),
            os_version: agent.os_version.clone(),
            device: Some(agent.device.as_str().to_owned()),
            country: location.country.map(|c| c.as_str().to_owned()),
            region: location.region,
            city: location.city,
            bot: agent.bot.is_some(),
        }))
    }

    /// The enrichment's lines of `/metrics`.
    pub fn write_metrics(&self, out: &mut String) {
        let c = &self.counters;
        let _ = write!(
            out,
            "# HELP beacon_events_dropped_total Events answered but not stored, by reason (bot: crawlers, monitors, previewers, HTTP libraries, headless browsers; see --keep-bots).\n\
             # TYPE beacon_events_dropped_total counter\n\
             beacon_events_dropped_total{{reason=\"bot\"}} {}\n\
             # HELP beacon_forwarded_headers_ignored_total Requests whose forwarding headers were ignored because their peer is not in --trusted-proxies.\n\
             # TYPE beacon_forwarded_headers_ignored_total counter\n\
             beacon_forwarded_headers_ignored_total {}\n\
             # HELP beacon_visitor_salt_missing_total Requests enriched without a visitor id because no salt for the day was held.\n\
             # TYPE beacon_visitor_salt_missing_total counter\n\
             beacon_visitor_salt_missing_total {}\n\
             # HELP beacon_geoip_reload_failures_total Replaced GeoIP files that failed to load (the previous one stays in use).\n\
             # TYPE beacon_geoip_reload_failures_total counter\n\
             beacon_geoip_reload_failures_total {}\n",
            c.bots.load(Ordering::Relaxed),
            c.spoofed.load(Ordering::Relaxed),
            c.no_salt.load(Ordering::Relaxed),
            c.geoip_reload_failures.load(Ordering::Relaxed),
        );
    }
}

/// How often the GeoIP file is checked for a replacement.
const GEOIP_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// Reloads the GeoIP database when its file is replaced (an update job
/// renames a new file over it); a file that cannot be loaded is logged
/// and counted, and the previous database stays in use.
pub fn watch_geoip(enrichment: Arc<Enrichment>) -> crate::tasks::Task {
    crate::tasks::Task::spawn("GeoIP reloader", move |mut stop| async move {
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(GEOIP_CHECK) => {}
            }
            let e = Arc::clone(&enrichment);
            let outcome = actix_web::web::block(move || {
                e.geoip()
                    .map(|geo| (geo.path().to_owned(), geo.reload_if_changed()))
            })
            .await;
            match outcome {
                Ok(Some((path, Ok(true)))) => {
                    log::info!("GeoIP database reloaded from {}", path.display());
                }
                Ok(Some((path, Err(e)))) => {
                    enrichment.geoip_reload_failed();
                    log::warn!(
                        "GeoIP database {} was replaced but cannot be loaded, the previous one \
                         stays in use: {e}",
                        path.display()
                    );
                }
                Ok(_) => {}
                Err(e) => log::warn!("GeoIP reload check failed: {e}"),
            }
        }
    })
}

/// The place the pixel itself reported for a session (`data.country`,
/// `data.region`, `data.city` of its first page view in the request): the
/// last resort, mapped to a code where the name is known.
fn pixel_location(events: &[NewEvent], session: &str) -> Option<Location> {
    let visit = events
        .iter()
        .filter(|e| e.session().as_str() == session && *e.kind() == EventKind::Visit)
        .min_by_key(|e| e.occurred_at())?;
    let country = visit.data_str("country").and_then(country_code)?;
    Some(Location {
        country: Some(country),
        region: visit.data_str("region").map(str::to_owned),
        city: visit.data_str("city").map(str::to_owned),
    })
}

/// The host of the page an event is about (lower case, without port), or
/// empty: a visitor id is per site.
fn site_host(url: Option<&str>) -> &str {
    let Some(url) = url else { return "" };
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.split(':').next().unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::site_host;

    #[test]
    fn the_site_of_an_event_is_its_urls_host() {
        for (url, host) in [
            (Some("https://portfolio.example/about"), "portfolio.example"),
            (
                Some("https://portfolio.example:8443/?q=1"),
                "portfolio.example",
            ),
            (Some("https://user@portfolio.example/"), "portfolio.example"),
            (Some("http://[2001:db8::1]:80/x"), "[2001:db8::1]"),
            (Some("portfolio.example/x"), "portfolio.example"),
            (Some(""), ""),
            (None, ""),
        ] {
            assert_eq!(site_host(url), host, "{url:?}");
        }
    }
}
