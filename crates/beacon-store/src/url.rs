use std::fmt;
use std::path::PathBuf;

use crate::StoreError;

/// A parsed `DATABASE_URL`: which backend, and where.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `postgres://…` or `postgresql://…`, passed to libpq as is.
    Postgres(String),
    /// `sqlite://PATH` or `sqlite:PATH`: a database file (created if absent).
    SqliteFile(PathBuf),
    /// `sqlite::memory:`: a private in-memory database, gone at exit.
    SqliteMemory,
}

impl DatabaseUrl {
    /// Parses a URL; the scheme selects the backend.
    pub fn parse(raw: &str) -> Result<Self, StoreError> {
        let raw = raw.trim();
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            return Ok(Self::Postgres(raw.to_owned()));
        }
        if raw == "sqlite::memory:" || raw == "sqlite://:memory:" {
            return Ok(Self::SqliteMemory);
        }
        let path = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"));
        match path {
            Some(p) if !p.is_empty() => Ok(Self::SqliteFile(PathBuf::from(p))),
            Some(_) => Err(StoreError::InvalidUrl(
                "sqlite url has no path (try sqlite://beacon.db)".into(),
            )),
            None => Err(StoreError::InvalidUrl(
                "expected postgres://, postgresql://, sqlite://PATH or sqlite::memory:".into(),
            )),
        }
    }

    /// The URL with any password replaced by `****`, safe to log.
    pub fn masked(&self) -> String {
        match self {
            Self::Postgres(url) => mask_password(url),
            Self::SqliteFile(path) => format!("sqlite://{}", path.display()),
            Self::SqliteMemory => "sqlite::memory:".into(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

fn mask_password(url: &str) -> String {
    let mut out = url.to_owned();
    // userinfo: scheme://user:password@host
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest_start + colon + 1..rest_start + at, "****");
            }
        }
    }
    // query parameter: ?password=…
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let masked: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=****"),
                _ => kv.to_owned(),
            })
            .collect();
        out = format!("{head}{}", masked.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn schemes_select_the_backend() {
        let cases = [
            ("postgres://u@h/db", "postgres"),
            ("postgresql://u@h/db", "postgres"),
            ("sqlite://beacon.db", "file"),
            ("sqlite:///tmp/x.db", "file"),
            ("sqlite:x.db", "file"),
            ("sqlite::memory:", "memory"),
        ];
        for (url, want) in cases {
            let got = match DatabaseUrl::parse(url).unwrap() {
                DatabaseUrl::Postgres(_) => "postgres",
                DatabaseUrl::SqliteFile(_) => "file",
                DatabaseUrl::SqliteMemory => "memory",
            };
            assert_eq!(got, want, "{url}");
        }
        assert_eq!(
            DatabaseUrl::parse("sqlite:///tmp/x.db").unwrap(),
            DatabaseUrl::SqliteFile("/tmp/x.db".into())
        );
        for bad in ["mysql://x", "", "sqlite://", "beacon.db"] {
            assert!(DatabaseUrl::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn passwords_never_reach_the_log() {
        let cases = [
            (
                "postgres://u:secret@h:5432/db",
                "postgres://u:****@h:5432/db",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "postgres://u:p%40ss@h/db?sslmode=require",
                "postgres://u:****@h/db?sslmode=require",
            ),
            (
                "postgres://h/db?user=u&password=secret",
                "postgres://h/db?user=u&password=****",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(DatabaseUrl::parse(url).unwrap().masked(), want, "{url}");
        }
    }
}
