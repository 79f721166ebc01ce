//! Credentials, the user directory and revoked sessions.

use std::sync::Arc;

use async_trait::async_trait;
use parley_domain::{
    auth::Session,
    logouts::{Logout, LogoutStore},
    ports::UserStore,
    Credential, DisplayName, PasswordHash, PublicUser, StoreError, Timestamp, UserId, Username,
};
use rusqlite::{params, OptionalExtension, Row};

use crate::db::Db;

pub struct SqliteUsers {
    db: Arc<Db>,
}

impl SqliteUsers {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Self { db }
    }
}

const USER_COLUMNS: &str = "id, username, display_name, created_at, password_hash";
/// The directory's columns, in the order [`public_from_row`] reads.
const PUBLIC_COLUMNS: &str = "id, username, display_name, created_at";

fn public_from_row(r: &Row<'_>) -> rusqlite::Result<PublicUser> {
    let id: String = r.get(0)?;
    let id = UserId::parse("id", &id).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(PublicUser {
        id,
        username: Username::from_trusted(r.get(1)?),
        display_name: DisplayName::from_trusted(r.get(2)?),
        created_at: Timestamp::from_millis(r.get(3)?),
    })
}

fn credential_from_row(r: &Row<'_>) -> rusqlite::Result<Credential> {
    Ok(Credential {
        user: public_from_row(r)?,
        hash: PasswordHash::from_phc(r.get(4)?),
    })
}

#[async_trait]
impl UserStore for SqliteUsers {
    async fn create(&self, credential: &Credential) -> Result<(), StoreError> {
        let u = credential.user.clone();
        let hash = credential.hash.as_phc().to_owned();
        self.db
            .write(move |tx| {
                tx.prepare_cached(
                    "INSERT INTO users (id, username, display_name, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    u.id.to_string(),
                    u.username.as_str(),
                    u.display_name.as_str(),
                    hash,
                    u.created_at.millis()
                ])?;
                // The directory answers for the user at once; the
                // projector inserts the same entry from `UserRegistered`.
                crate::projection::directory(tx, &u)
            })
            .await
    }

    async fn remove(&self, id: UserId) -> Result<(), StoreError> {
        self.db
            .write(move |tx| {
                tx.execute("DELETE FROM users WHERE id = ?1", [id.to_string()])?;
                tx.execute("DELETE FROM directory WHERE id = ?1", [id.to_string()])
                    .map(drop)
            })
            .await
    }

    async fn by_username(&self, username: &Username) -> Result<Option<Credential>, StoreError> {
        let name = username.as_str().to_owned();
        self.db
            .read(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE username = ?1"
                ))?
                .query_row([name], credential_from_row)
                .optional()
            })
            .await
    }

    async fn by_id(&self, id: UserId) -> Result<Option<PublicUser>, StoreError> {
        self.db
            .read(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {PUBLIC_COLUMNS} FROM directory WHERE id = ?1"
                ))?
                .query_row([id.to_string()], public_from_row)
                .optional()
            })
            .await
    }

    async fn search_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<PublicUser>, StoreError> {
        // Usernames use [a-z0-9_.] only, all below '~', so this range is
        // exactly "starts with prefix" and uses the unique index.
        let (lo, hi) = (prefix.to_owned(), format!("{prefix}~"));
        self.db
            .read(move |c| {
                let mut st = c.prepare_cached(&format!(
                    "SELECT {PUBLIC_COLUMNS} FROM directory WHERE username >= ?1 AND username < ?2 ORDER BY username LIMIT ?3"
                ))?;
                let rows = st.query_map(params![lo, hi, limit as i64], public_from_row)?;
                rows.collect()
            })
            .await
    }
}

/// Logouts are few and short-lived, so a read gives every unexpired one
/// rather than those of a range of stamps.
#[async_trait]
impl LogoutStore for SqliteUsers {
    async fn record(&self, session: &Session, at_ms: i64) -> Result<(), StoreError> {
        let (sid, exp) = (session.session_id.clone(), session.expires_at);
        let now = at_ms / 1000;
        self.db
            .write(move |tx| {
                tx.execute("DELETE FROM revoked_sessions WHERE expires_at < ?1", [now])?;
                tx.execute(
                    "INSERT OR IGNORE INTO revoked_sessions (session_id, expires_at) VALUES (?1, ?2)",
                    params![sid, exp],
                )
                .map(drop)
            })
            .await
    }

    async fn stamped_between(&self, _from: i64, _to: i64) -> Result<Vec<Logout>, StoreError> {
        let now = Timestamp::now().millis() / 1000;
        self.db
            .read(move |c| {
                let mut st = c.prepare_cached(
                    "SELECT session_id, expires_at FROM revoked_sessions WHERE expires_at >= ?1",
                )?;
                let rows = st.query_map([now], |r| {
                    Ok(Logout {
                        session_id: r.get(0)?,
                        expires_at: r.get(1)?,
                    })
                })?;
                rows.collect()
            })
            .await
    }

    /// Another process may still log out through the same file.
    fn outage_stops_logouts(&self) -> bool {
        false
    }
}
