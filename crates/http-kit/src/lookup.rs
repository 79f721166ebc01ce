//! Look-ups several routes share.

use parley_domain::{ports::UserStore, PublicUser, UserId};

use crate::problem::Problem;

/// The user a `{peer_id}` path segment names, or 404: a malformed id names
/// nobody, so it is "not found" rather than a validation error.
pub async fn peer(users: &dyn UserStore, raw: &str) -> Result<PublicUser, Problem> {
    let id = UserId::parse("peer_id", raw).map_err(|_| Problem::not_found("no such user"))?;
    users
        .by_id(id)
        .await?
        .ok_or_else(|| Problem::not_found("no such user"))
}
