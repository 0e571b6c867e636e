//! The owned event that the unit tests (`src/tests.rs`) and the model test
//! (`tests/model.rs`) write, and the borrowed view the aggregator records:
//! one definition for both (each includes this file with `#[path]`).

use super::{DateTime, LiveEvent, Utc, Value};

/// An owned event, metadata as a JSON value.
#[derive(Debug, Clone)]
pub(crate) struct Ev {
    pub(crate) id: i64,
    pub(crate) kind: String,
    pub(crate) session: String,
    pub(crate) url: Option<String>,
    pub(crate) referrer: Option<String>,
    pub(crate) timestamp: DateTime<Utc>,
    pub(crate) metadata: Value,
    pub(crate) visitor: Option<i64>,
    pub(crate) country: Option<String>,
    pub(crate) device: Option<String>,
}

impl Ev {
    /// The view the server builds from a stored row: the label extracted,
    /// the metadata as JSON text (`metadata_json`, this event's
    /// `metadata` serialized).
    pub(crate) fn view<'a>(&'a self, metadata_json: &'a str) -> LiveEvent<'a> {
        LiveEvent {
            id: self.id,
            kind: &self.kind,
            session: &self.session,
            url: self.url.as_deref(),
            referrer: self.referrer.as_deref(),
            timestamp: self.timestamp,
            label: self.metadata.get("label").and_then(Value::as_str),
            metadata: metadata_json,
            visitor: self.visitor,
            country: self.country.as_deref(),
            device: self.device.as_deref(),
        }
    }
}
