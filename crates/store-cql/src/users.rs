//! Credentials (username unique by LWT) and the public directory.

use async_trait::async_trait;
use futures_util::future::try_join_all;
use parley_domain::{
    ports::UserStore, Credential, DisplayName, PasswordHash, PublicUser, StoreError, Timestamp,
    UserId, Username,
};
use scylla::value::{CqlValue, Row};

use crate::{rows_error, Cql};

type UserRow = (String, String, String, i64);

fn public_from_row(
    (id, username, display_name, created_at): UserRow,
) -> Result<PublicUser, StoreError> {
    Ok(PublicUser {
        id: UserId::parse("id", &id).map_err(StoreError::unexpected)?,
        username: Username::from_trusted(username),
        display_name: DisplayName::from_trusted(display_name),
        created_at: Timestamp::from_millis(created_at),
    })
}

/// The 1-, 2- and 3-character prefixes a user is listed under.
pub(crate) fn prefixes(username: &str) -> impl Iterator<Item = &str> {
    (1..=3).filter_map(move |n| username.get(..n))
}

/// Microseconds for `USING TIMESTAMP`, from an event's milliseconds.
pub(crate) fn micros(t: Timestamp) -> i64 {
    t.millis().saturating_mul(1000)
}

impl Cql {
    /// Writes a user's public view; the projector calls it again from
    /// `UserRegistered` with the same values, so replay rebuilds it.
    pub(crate) async fn write_public_user(&self, u: &PublicUser) -> Result<(), StoreError> {
        let writes = self
            .st
            .directory_rows(u)
            .into_iter()
            .map(|(p, r)| self.partition_write(p.request(), vec![r]));
        try_join_all(writes).await.map(drop)
    }
}

#[async_trait]
impl UserStore for Cql {
    #[tracing::instrument(name = "cql.user_create", skip_all)]
    async fn create(&self, c: &Credential) -> Result<(), StoreError> {
        let u = &c.user;
        let rows = self
            .run(
                &self.st.user_claim,
                (
                    u.username.as_str(),
                    u.id.to_string(),
                    u.display_name.as_str(),
                    u.created_at.millis(),
                    c.hash.as_phc(),
                ),
            )
            .await?
            .into_rows_result()
            .map_err(rows_error)?;
        let row: Row = rows.single_row().map_err(rows_error)?;
        if !matches!(row.columns.first(), Some(Some(CqlValue::Boolean(true)))) {
            return Err(StoreError::conflict_msg("username is taken"));
        }
        self.write_public_user(u).await
    }

    async fn remove(&self, id: UserId) -> Result<(), StoreError> {
        let Some(user) = self.by_id(id).await? else {
            return Ok(());
        };
        let (name, id) = (user.username.as_str(), id.to_string());
        let mut writes = vec![
            self.write(&self.st.user_unclaim, (name, id.clone())),
            self.write(&self.st.user_by_id_delete, (id.clone(),)),
        ];
        for prefix in prefixes(name) {
            writes.push(self.write(&self.st.directory_delete, (prefix, name)));
        }
        try_join_all(writes).await.map(drop)
    }

    async fn by_username(&self, username: &Username) -> Result<Option<Credential>, StoreError> {
        let rows = self
            .run(&self.st.user_by_name, (username.as_str(),))
            .await?
            .into_rows_result()
            .map_err(rows_error)?;
        let Some((id, name, display, created, hash)) = rows
            .maybe_first_row::<(String, String, String, i64, String)>()
            .map_err(rows_error)?
        else {
            return Ok(None);
        };
        Ok(Some(Credential {
            user: public_from_row((id, name, display, created))?,
            hash: PasswordHash::from_phc(hash),
        }))
    }

    async fn by_id(&self, id: UserId) -> Result<Option<PublicUser>, StoreError> {
        let rows = self
            .run(&self.st.user_by_id, (id.to_string(),))
            .await?
            .into_rows_result()
            .map_err(rows_error)?;
        rows.maybe_first_row::<UserRow>()
            .map_err(rows_error)?
            .map(public_from_row)
            .transpose()
    }

    async fn search_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<PublicUser>, StoreError> {
        let Some(partition) = prefixes(prefix).last() else {
            return Ok(Vec::new());
        };
        // Usernames use [a-z0-9_.] only, all below '~'.
        let hi = format!("{prefix}~");
        let rows = self
            .run(
                &self.st.directory_search,
                (partition, prefix, hi.as_str(), limit.min(1000) as i32),
            )
            .await?
            .into_rows_result()
            .map_err(rows_error)?;
        rows.rows::<UserRow>()
            .map_err(rows_error)?
            .map(|r| r.map_err(rows_error).and_then(public_from_row))
            .collect()
    }
}
