//! Decoding a GeoIP record: the few fields Beacon reads, in any of the
//! layouts, without failing on a field of an unexpected type.

use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::Location;
use crate::{country_code, CountryCode};

/// `visit_*` for every scalar but strings, each giving `$value`: a field of
/// such a type is skipped.
macro_rules! skip_scalars {
    ($value:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u128<E>(self, _: u128) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_bytes<E>(self, _: &[u8]) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// The fields Beacon reads, from any of the layouts (others are skipped).
/// Every field is [`Field`]: a value of an unexpected type is ignored, not
/// an error, so an unfamiliar layout gives what it can.
#[derive(Deserialize)]
pub(super) struct Record<'a> {
    /// GeoIP2: `{"iso_code": "DE", "names": …}`; flat: a code or a name.
    #[serde(borrow, default)]
    country: Field<'a, IsoCode<'a>>,
    #[serde(borrow, default)]
    country_code: Field<'a, IgnoredAny>,
    /// GeoIP2: `[{"names": {"en": …}}, …]`, most significant first.
    #[serde(borrow, default)]
    subdivisions: First<Named<'a>>,
    /// GeoIP2: `{"names": {"en": …}}`; flat: a name.
    #[serde(borrow, default)]
    city: Field<'a, Named<'a>>,
    #[serde(borrow, default)]
    region: Field<'a, IgnoredAny>,
    #[serde(borrow, default)]
    state1: Field<'a, IgnoredAny>,
}

#[derive(Deserialize)]
struct IsoCode<'a> {
    #[serde(borrow, default)]
    iso_code: Field<'a, IgnoredAny>,
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow, default)]
    names: Field<'a, Names<'a>>,
}

#[derive(Deserialize)]
struct Names<'a> {
    #[serde(borrow, default)]
    en: Field<'a, IgnoredAny>,
}

/// A record field: a map (decoded as `M`), a string, or anything else
/// (skipped). Decoded without buffering: the decoder says which it is.
#[derive(Default)]
enum Field<'a, M> {
    Map(M),
    Text(&'a str),
    #[default]
    Other,
}

impl<'a, M> Field<'a, M> {
    fn text(&self) -> Option<&'a str> {
        match self {
            Field::Text(text) => Some(text),
            _ => None,
        }
    }

    fn map(&self) -> Option<&M> {
        match self {
            Field::Map(map) => Some(map),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a, M: Deserialize<'de>> Deserialize<'de> for Field<'a, M> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldVisitor(PhantomData))
    }
}

struct FieldVisitor<'a, M>(PhantomData<(&'a (), M)>);

impl<'de: 'a, 'a, M: Deserialize<'de>> Visitor<'de> for FieldVisitor<'a, M> {
    type Value = Field<'a, M>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any value")
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Text(text))
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Field::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        M::deserialize(MapAccessDeserializer::new(map)).map(Field::Map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq)?;
        Ok(Field::Other)
    }

    skip_scalars!(Field::Other);
}

/// Reads a whole list, keeping nothing.
fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// The first element of a list (the rest are skipped); anything that is
/// not a list is skipped and gives `None`.
struct First<T>(Option<T>);

impl<T> Default for First<T> {
    fn default() -> Self {
        First(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for First<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FirstVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for FirstVisitor<T> {
            type Value = First<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let first = seq.next_element()?;
                skip_seq(seq)?;
                Ok(First(first))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                IgnoredAny::deserialize(MapAccessDeserializer::new(map))?;
                Ok(First(None))
            }
            fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Self::Value, E> {
                Ok(First(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(First(None))
            }
            skip_scalars!(First(None));
        }
        deserializer.deserialize_any(FirstVisitor(PhantomData))
    }
}

impl Named<'_> {
    fn english(&self) -> Option<&str> {
        self.names.map()?.en.text()
    }
}

impl Record<'_> {
    pub(super) fn location(&self) -> Location {
        let country = self
            .country
            .map()
            .and_then(|c| c.iso_code.text())
            .and_then(CountryCode::parse)
            .or_else(|| self.country_code.text().and_then(CountryCode::parse))
            .or_else(|| self.country.text().and_then(country_code));
        let region = self
            .subdivisions
            .0
            .as_ref()
            .and_then(Named::english)
            .or(self.region.text())
            .or(self.state1.text());
        let city = self
            .city
            .map()
            .and_then(Named::english)
            .or(self.city.text());
        Location {
            country,
            region: text(region),
            city: text(city),
        }
    }
}

/// A non-empty name, trimmed, at most 200 bytes (the file is data from
/// outside; nothing stored should be unbounded).
fn text(name: Option<&str>) -> Option<String> {
    let name = name?.trim();
    if name.is_empty() || name.len() > 200 {
        return None;
    }
    Some(name.to_owned())
}
