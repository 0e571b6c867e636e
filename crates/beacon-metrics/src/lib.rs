#![doc = include_str!("../README.md")]

pub mod anomaly;
mod chunks;
mod config;
mod dropped;
mod event;
mod hash;
mod intern;
mod live;
mod mem;
mod recent;
mod ring;
mod sessions;
mod snapshot;
mod time;
mod topk;
mod visitors;

#[cfg(test)]
mod tests;

pub use config::LiveConfig;
pub use event::{LiveEvent, DROP_BOT, KIND_CLICK, KIND_SESSION_END, KIND_VISIT, UNKNOWN_LABEL};
pub use live::{LiveMetrics, LiveStats};
pub use snapshot::{
    CountryVisitors, DeviceVisitors, LabelCount, PageVisitors, RecentEvent, ReferrerVisitors,
    Snapshot,
};
