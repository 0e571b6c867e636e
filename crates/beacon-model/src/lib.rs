#![doc = include_str!("../README.md")]

#[doc(hidden)]
pub mod check;
mod error;
mod event;
mod limits;
mod parse;
mod profile;
mod text;

pub use error::{ModelError, Rejection};
pub use event::{
    cut_label, EventId, EventKind, NewEvent, RestoreError, RestoredEvent, SessionToken,
};
pub use limits::Limits;
pub use parse::{parse_track_body, ParsedBatch, RequestContext};
pub use profile::VisitorProfile;
pub use text::escape_for_log;
