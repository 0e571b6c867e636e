#![doc = include_str!("../README.md")]

mod addr;
mod agent;
mod country;
mod error;
mod geo;
mod visitor;

pub use addr::{client_addr, parse_node, ClientAddr, ForwardingHeaders, TrustedProxies, MAX_HOPS};
pub use agent::{
    Agent, BotPatterns, BotReason, Device, UserAgents, DEFAULT_CACHE_CAPACITY, MAX_USER_AGENT_BYTES,
};
pub use country::{cdn_country, country_code, country_names, CountryCode};
pub use error::EnrichError;
pub use geo::{GeoIp, Location};
pub use visitor::{visitor_id, Salt};
