//! query-api: the read side. Serves `me`, the user directory, inboxes and
//! history pages from the read models; never writes.

use std::{sync::Arc, time::Instant};

use axum::{
    extract::{FromRef, Path, State},
    routing::get,
    Json, Router,
};
use parley_domain::{
    ports::{InboxReader, TimelineReader, UserStore},
    ConversationId, Cursor, Message, PublicUser, Username, ValidationError,
};
use parley_http_kit::{
    api::{self, MessageDoc, PeerPath, ProblemDoc, UserDoc},
    lookup, AppQuery, AuthState, Caller, Problem,
};
use serde::{Deserialize, Serialize};
use utoipa::{
    openapi::{
        path::{Parameter, ParameterIn},
        schema::{Object, ObjectBuilder, Type},
    },
    IntoParams, ToSchema,
};

/// Page size when the client names none, and the most it may ask for.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 200;
/// Most users one directory search returns.
pub const MAX_SEARCH: usize = 20;
/// Most conversations the inbox lists (newest activity first).
pub const MAX_INBOX: usize = 200;

#[derive(Clone)]
pub struct QueryApi {
    pub users: Arc<dyn UserStore>,
    pub timelines: Arc<dyn TimelineReader>,
    pub inboxes: Arc<dyn InboxReader>,
    pub auth: Arc<AuthState>,
}

impl FromRef<QueryApi> for Arc<AuthState> {
    fn from_ref(s: &QueryApi) -> Self {
        s.auth.clone()
    }
}

/// The read side's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(me, search, inbox, history),
    components(schemas(UserBody, UsersBody, Conversation, InboxBody, PageBody))
)]
pub struct Doc;

pub fn router(state: QueryApi) -> Router {
    Router::new()
        .route("/v1/me", get(me))
        .route("/v1/users", get(search))
        .route("/v1/conversations", get(inbox))
        .route("/v1/conversations/{peer_id}/messages", get(history))
        .with_state(state)
}

#[derive(Serialize, ToSchema)]
struct UserBody {
    #[schema(value_type = UserDoc)]
    user: PublicUser,
}

/// The caller.
#[utoipa::path(get, path = "/v1/me", tag = "users",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The caller", body = UserBody),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "A backend is unavailable; see Retry-After", body = ProblemDoc, content_type = "application/problem+json",
            headers(("retry-after" = u64, description = "Seconds"))),
    ))]
async fn me(
    State(api): State<QueryApi>,
    Caller(caller): Caller,
) -> Result<Json<UserBody>, Problem> {
    let user = api
        .users
        .by_id(caller.user_id)
        .await?
        .ok_or_else(Problem::unauthorized)?;
    Ok(Json(UserBody { user }))
}

#[derive(Deserialize)]
struct SearchQuery {
    query: Option<String>,
}

impl IntoParams for SearchQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![api::parameter(
            "query",
            ParameterIn::Query,
            true,
            "A username prefix",
            api::username_prefix(),
        )]
    }
}

#[derive(Serialize, ToSchema)]
struct UsersBody {
    /// At most 20, alphabetical.
    #[schema(value_type = Vec<UserDoc>)]
    users: Vec<PublicUser>,
}

/// Users whose username starts with a prefix.
#[utoipa::path(get, path = "/v1/users", tag = "users",
    params(SearchQuery),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Matching users", body = UsersBody),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "`query` missing or breaking its rule", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "A backend is unavailable; see Retry-After", body = ProblemDoc, content_type = "application/problem+json",
            headers(("retry-after" = u64, description = "Seconds"))),
    ))]
async fn search(
    State(api): State<QueryApi>,
    Caller(_): Caller,
    AppQuery(q): AppQuery<SearchQuery>,
) -> Result<Json<UsersBody>, Problem> {
    let raw = q
        .query
        .ok_or_else(|| ValidationError::new("query", "is required"))?;
    let prefix = Username::parse_prefix(&raw)?;
    let users = api.users.search_prefix(&prefix, MAX_SEARCH).await?;
    Ok(Json(UsersBody { users }))
}

#[derive(Serialize, ToSchema)]
struct Conversation {
    #[schema(value_type = String)]
    conversation_id: ConversationId,
    #[schema(value_type = UserDoc)]
    peer: PublicUser,
    #[schema(value_type = MessageDoc)]
    last_message: Message,
    unread_count: u64,
}

#[derive(Serialize, ToSchema)]
struct InboxBody {
    /// Newest activity first, at most 200.
    conversations: Vec<Conversation>,
}

/// The caller's conversations.
#[utoipa::path(get, path = "/v1/conversations", tag = "messages",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Conversations, newest activity first", body = InboxBody),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "A backend is unavailable; see Retry-After", body = ProblemDoc, content_type = "application/problem+json",
            headers(("retry-after" = u64, description = "Seconds"))),
    ))]
#[tracing::instrument(name = "inbox", skip_all, fields(user = %caller.user_id))]
async fn inbox(
    State(api): State<QueryApi>,
    Caller(caller): Caller,
) -> Result<Json<InboxBody>, Problem> {
    let entries = api.inboxes.inbox(caller.user_id, MAX_INBOX).await?;
    let mut conversations = Vec::with_capacity(entries.len());
    for e in entries {
        let Some(peer) = api.users.by_id(e.peer).await? else {
            tracing::warn!(peer = %e.peer, "inbox names an unknown user");
            continue;
        };
        conversations.push(Conversation {
            conversation_id: e.conversation_id,
            peer,
            last_message: e.last_message,
            unread_count: e.unread_count,
        });
    }
    Ok(Json(InboxBody { conversations }))
}

#[derive(Deserialize)]
struct PageQuery {
    before: Option<String>,
    limit: Option<String>,
}

impl IntoParams for PageQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            api::parameter(
                "before",
                ParameterIn::Query,
                false,
                "Messages older than this cursor (a `next_cursor`); the newest page without it",
                api::cursor(),
            ),
            api::parameter(
                "limit",
                ParameterIn::Query,
                false,
                "Messages per page",
                page_limit(),
            ),
        ]
    }
}

fn page_limit() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(MAX_PAGE as u64))
        .default(Some(DEFAULT_PAGE.into()))
        .description(Some("Messages per page"))
        .build()
}

#[derive(Serialize, ToSchema)]
struct PageBody {
    /// Newest first.
    #[schema(value_type = Vec<MessageDoc>)]
    messages: Vec<Message>,
    /// The cursor of the next (older) page; null on the last page.
    next_cursor: Option<String>,
}

fn parse_limit(raw: Option<&str>) -> Result<usize, ValidationError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_PAGE);
    };
    match raw.parse::<usize>() {
        Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        _ => Err(ValidationError::new(
            "limit",
            "must be an integer from 1 to 200",
        )),
    }
}

/// A page of a conversation's history, newest first.
#[utoipa::path(get, path = "/v1/conversations/{peer_id}/messages", tag = "messages",
    params(PeerPath, PageQuery),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "A page", body = PageBody),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "`limit` or `before` breaking its rule", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "A backend is unavailable; see Retry-After", body = ProblemDoc, content_type = "application/problem+json",
            headers(("retry-after" = u64, description = "Seconds"))),
    ))]
#[tracing::instrument(name = "history", skip_all, fields(user = %caller.user_id))]
async fn history(
    State(api): State<QueryApi>,
    Caller(caller): Caller,
    Path(peer_id): Path<String>,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<Json<PageBody>, Problem> {
    let started = Instant::now();
    let peer = lookup::peer(api.users.as_ref(), &peer_id).await?;
    let limit = parse_limit(q.limit.as_deref())?;
    let before = q.before.as_deref().map(Cursor::decode).transpose()?;
    let conversation = ConversationId::between(caller.user_id, peer.id);
    // One extra row tells whether another page exists, so the last page
    // says `next_cursor: null` instead of leading to an empty one.
    let mut messages = api
        .timelines
        .page(conversation, before.map(|c| c.before), limit + 1)
        .await?;
    let next_cursor = if messages.len() > limit {
        messages.truncate(limit);
        messages.last().map(|m| Cursor { before: m.id }.encode())
    } else {
        None
    };
    metrics::histogram!("parley_history_page_seconds").record(started.elapsed().as_secs_f64());
    Ok(Json(PageBody {
        messages,
        next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None), Ok(DEFAULT_PAGE));
        assert_eq!(parse_limit(Some("1")), Ok(1));
        assert_eq!(parse_limit(Some("200")), Ok(200));
        for bad in ["0", "201", "-1", "ten", ""] {
            assert_eq!(parse_limit(Some(bad)).unwrap_err().field, "limit");
        }
    }
}
