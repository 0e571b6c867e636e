//! The daily salts of the visitor ids (table `visitor_salts`, migration
//! `2026-12-07-000002_visitors`): one random salt per UTC day, shared by
//! every instance through the database. The first instance to ask for a
//! day's salt stores the one it offers; every other gets that one.

use diesel::sql_types::{BigInt, Binary};
use diesel::QueryableByName;

use crate::read::{execute, load, Param};
use crate::{Store, StoreError};

/// Length of a salt, in bytes.
pub const SALT_BYTES: usize = 32;

#[derive(QueryableByName)]
struct SaltRow {
    #[diesel(sql_type = BigInt)]
    day: i64,
    #[diesel(sql_type = Binary)]
    salt: Vec<u8>,
}

impl Store {
    /// The salt of `day` (days since the Unix epoch, UTC). When none is
    /// stored yet, `offer` becomes it; either way every instance gets the
    /// same bytes.
    pub fn visitor_salt(
        &self,
        day: i64,
        offer: [u8; SALT_BYTES],
    ) -> Result<[u8; SALT_BYTES], StoreError> {
        execute(
            self,
            "INSERT INTO visitor_salts (day, salt) VALUES (?, ?) ON CONFLICT (day) DO NOTHING",
            &[Param::Int(day), Param::Bytes(offer.to_vec())],
        )?;
        let rows: Vec<SaltRow> = load(
            self,
            "SELECT day, salt FROM visitor_salts WHERE day = ?",
            &[Param::Int(day)],
        )?;
        rows.into_iter()
            .find(|r| r.day == day)
            .and_then(|r| <[u8; SALT_BYTES]>::try_from(r.salt).ok())
            .ok_or(StoreError::MissingSalt(day))
    }

    /// Deletes the salts of the days before `day`; returns how many.
    pub fn delete_salts_before(&self, day: i64) -> Result<usize, StoreError> {
        execute(
            self,
            "DELETE FROM visitor_salts WHERE day < ?",
            &[Param::Int(day)],
        )
    }
}
