//! Location from an offline MaxMind DB (`.mmdb`) file (issue 17, point 4).
//!
//! The file is memory-mapped (crate `maxminddb`, feature `mmap`) and held
//! behind an [`ArcSwap`]: a lookup loads the current reader without a lock,
//! and a reload swaps in a new one while lookups on the old one finish.

use std::collections::HashSet;
use std::fs::{File, Metadata};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use maxminddb::{Mmap, Reader, WithinOptions};

use crate::{CountryCode, EnrichError};

mod record;

use record::Record;

/// Where an address is, as far as the GeoIP file knows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// The country (ISO 3166-1 alpha-2).
    pub country: Option<CountryCode>,
    /// The first-level subdivision's English name (state, Land, region).
    pub region: Option<String>,
    /// The city's English name.
    pub city: Option<String>,
}

/// A GeoIP database file, reloadable while in use.
pub struct GeoIp {
    path: PathBuf,
    current: ArcSwap<Loaded>,
    /// Serializes reloads, and remembers the stamp of a file that failed to
    /// load so that its error is returned once, not on every check.
    reload: Mutex<Option<Stamp>>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("path", &self.path)
            .field("database_type", &self.database_type())
            .finish_non_exhaustive()
    }
}

struct Loaded {
    reader: Reader<Mmap>,
    stamp: Stamp,
}

/// What tells that the file at the path is another file now: its size,
/// modification time and (on Unix) device and inode, so that a new file
/// renamed over the old one is seen even with the same size and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    id: (u64, u64),
}

impl Stamp {
    fn of(meta: &Metadata) -> Self {
        #[cfg(unix)]
        let id = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let id = (0, 0);
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            id,
        }
    }
}

impl GeoIp {
    /// Opens and maps the file, and checks it by reading every record once.
    /// A missing, unreadable, truncated or corrupt file is an error that
    /// names it. The check reads the whole file (a City database takes a
    /// moment): open and reload off the request path.
    pub fn open(path: &Path) -> Result<Self, EnrichError> {
        let loaded = load(path)?;
        Ok(Self {
            path: path.to_owned(),
            current: ArcSwap::from_pointee(loaded),
            reload: Mutex::new(None),
        })
    }

    /// The file this database was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The loaded file's `database_type` (`"GeoLite2-City"`,
    /// `"DBIP-Country-Lite"`, …), for the start-up log.
    pub fn database_type(&self) -> String {
        self.current.load().reader.metadata().database_type.clone()
    }

    /// The loaded file's build time, seconds since the Unix epoch.
    pub fn build_epoch(&self) -> u64 {
        self.current.load().reader.metadata().build_epoch
    }

    /// The location of `ip`, or `None` when the file has no record for it
    /// (or a record with neither country, region nor city).
    ///
    /// Record layouts, tried in order for each field: GeoIP2 / GeoLite2 and
    /// DB-IP (`country.iso_code`, `subdivisions[0].names.en`,
    /// `city.names.en`); flat layouts (`country_code`; `country` as a code
    /// or an English name; `region` or `state1`; `city` as text). An
    /// IPv4-mapped IPv6 address is looked up as IPv4. Never blocks: a
    /// reload swaps the reader without stopping lookups.
    pub fn lookup(&self, ip: IpAddr) -> Option<Location> {
        let loaded = self.current.load();
        let result = loaded.reader.lookup(ip.to_canonical()).ok()?;
        let record: Record<'_> = result.decode().ok()??;
        let location = record.location();
        (location != Location::default()).then_some(location)
    }

    /// Reloads the file if the path now holds another file (size,
    /// modification time or inode changed): `Ok(true)` if it did,
    /// `Ok(false)` if nothing changed. If the new file cannot be loaded the
    /// current database stays in use and the error is returned, once per
    /// changed file (the next calls return `Ok(false)` until the file
    /// changes again). A check without a change costs one `stat`.
    pub fn reload_if_changed(&self) -> Result<bool, EnrichError> {
        let mut failed = self
            .reload
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let meta = std::fs::metadata(&self.path).map_err(|source| self.io_error(source))?;
        let stamp = Stamp::of(&meta);
        if stamp == self.current.load().stamp || Some(stamp) == *failed {
            return Ok(false);
        }
        match load(&self.path) {
            Ok(loaded) => {
                self.current.store(Arc::new(loaded));
                *failed = None;
                Ok(true)
            }
            Err(error) => {
                *failed = Some(stamp);
                Err(error)
            }
        }
    }

    fn io_error(&self, source: std::io::Error) -> EnrichError {
        EnrichError::GeoIpIo {
            path: self.path.clone(),
            source,
        }
    }
}

fn load(path: &Path) -> Result<Loaded, EnrichError> {
    let io = |source| EnrichError::GeoIpIo {
        path: path.to_owned(),
        source,
    };
    let invalid = |source| EnrichError::GeoIpInvalid {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    // The stamp of the file actually mapped, not of whatever the path
    // names a moment later.
    let stamp = Stamp::of(&file.metadata().map_err(io)?);
    let map = map_file(&file).map_err(io)?;
    let reader = Reader::from_source(map).map_err(invalid)?;
    check_records(&reader).map_err(invalid)?;
    Ok(Loaded { reader, stamp })
}

/// Walks the whole search tree and decodes every distinct record as
/// [`GeoIp::lookup`] will, so that a corrupt file is refused at open (or
/// kept out at reload) instead of failing lookups one by one.
///
/// Not `Reader::verify`: that also insists on metadata Beacon does not
/// need (a non-empty description map), which some country-only files may
/// lack. A cycle in a corrupt tree is caught as `verify` catches it: a
/// tree of N nodes has fewer than 3N networks.
fn check_records(reader: &Reader<Mmap>) -> Result<(), maxminddb::MaxMindDbError> {
    let limit = (reader.metadata().node_count as usize)
        .saturating_mul(3)
        .saturating_add(16);
    let mut seen = HashSet::new();
    for (walked, network) in reader.networks(WithinOptions::default())?.enumerate() {
        if walked > limit {
            return Err(maxminddb::MaxMindDbError::invalid_database(
                "the search tree has more networks than nodes allow (a cycle?)",
            ));
        }
        let network = network?;
        if network.offset().is_some_and(|offset| seen.insert(offset)) {
            network.decode::<Record<'_>>()?;
        }
    }
    Ok(())
}

/// Maps the file read-only.
///
/// SAFETY: a mapping is only sound while nobody changes the file under it;
/// a file truncated in place would make reading the mapping fault. Beacon
/// never writes the file, and the supported way to update it is to write a
/// new file and rename it over the old path (as `geoipupdate` and `mv` do):
/// the old inode, and so this mapping, stay intact until the last reader of
/// it is dropped. docs/enrichment.md and docs/operations.md say so. A copy
/// over the file in place (`cp new.mmdb GeoLite2-City.mmdb`) breaks that
/// contract.
#[expect(
    unsafe_code,
    reason = "memory-mapping the GeoIP file; see the SAFETY note"
)]
fn map_file(file: &File) -> std::io::Result<Mmap> {
    unsafe { Mmap::map(file) }
}
