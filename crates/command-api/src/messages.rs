//! Sending messages and marking conversations read.

use std::time::{Duration, Instant};

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use parley_domain::{
    commands::{decide_read, ensure_sender, SendMessage, SendRejected},
    ports::{Appended, PROJECTOR_GROUP},
    ConversationId, Event, Message, MessageId, Timestamp, UserId, ValidationError, Watermark,
};
use parley_http_kit::{
    api, api::PeerPath, api::ProblemDoc, extract::from_value, lookup, AppJson, Caller, Problem,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::CommandApi;

/// The sender is always the caller: a `from` or `sender_id` naming anyone
/// else is a 403.
#[derive(Deserialize, ToSchema)]
pub struct SendBody {
    /// The recipient: an existing user (404 otherwise), not the caller
    /// (422).
    #[schema(schema_with = api::uuid)]
    to: String,
    #[schema(schema_with = api::message_body)]
    body: String,
    #[schema(schema_with = api::client_id)]
    client_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Accepted)]
pub(crate) struct Accepted<'a> {
    #[schema(value_type = api::MessageDoc)]
    message: &'a Message,
}

#[derive(Deserialize, ToSchema)]
pub struct ReadBody {
    /// A message of this conversation (422 otherwise); everything up to
    /// it is read.
    #[schema(schema_with = api::uuid)]
    up_to: String,
}

fn rejection(e: SendRejected) -> Problem {
    match e {
        SendRejected::Impersonation => {
            Problem::forbidden("the sender is the authenticated user; do not name another")
        }
        SendRejected::Invalid(v) => Problem::invalid(v),
    }
}

fn outcome(label: &'static str, started: Instant) {
    metrics::counter!("parley_sends_total", "outcome" => label).increment(1);
    metrics::histogram!("parley_send_duration_seconds", "outcome" => label)
        .record(started.elapsed().as_secs_f64());
}

/// Send a message; 202 once it is durable in the log.
#[utoipa::path(post, path = "/v1/messages", tag = "messages",
    request_body = SendBody,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 202, description = "Accepted and durable", body = Accepted),
        (status = 400, description = "Malformed JSON", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "The body names another sender, or a cookie-authenticated request from a foreign origin", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "The recipient does not exist", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive in time", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The client_id was used for another message", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "Body not `application/json`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks its rule; `errors[].field` names it", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many sends by this user; see Retry-After", body = ProblemDoc, content_type = "application/problem+json",
            headers(("retry-after" = u64, description = "Seconds"))),
        (status = 503, description = "A backend is unavailable; see Retry-After", body = ProblemDoc, content_type = "application/problem+json",
            headers(("retry-after" = u64, description = "Seconds"))),
    ))]
#[tracing::instrument(name = "send", skip_all, fields(from = %caller.user_id))]
pub async fn send(
    State(api): State<CommandApi>,
    Caller(caller): Caller,
    AppJson(raw): AppJson<serde_json::Value>,
) -> Result<Response, Problem> {
    let started = Instant::now();
    if let Err(limited) = api.guards.sends_per_user.check(&caller.user_id) {
        outcome("limited", started);
        return Err(limited.into());
    }
    let result = send_inner(&api, caller.user_id, raw).await;
    match &result {
        Ok((_, Appended::New(_))) => outcome("accepted", started),
        Ok((_, Appended::Duplicate(_))) => outcome("duplicate", started),
        Err(p) if p.status().is_server_error() => outcome("failed", started),
        Err(_) => outcome("rejected", started),
    }
    let (message, _) = result?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { message: &message })).into_response())
}

async fn send_inner(
    api: &CommandApi,
    caller: parley_domain::UserId,
    raw: serde_json::Value,
) -> Result<(Message, Appended), Problem> {
    let obj = raw.as_object().ok_or_else(|| {
        Problem::invalid(parley_domain::ValidationError::new(
            "body",
            "must be a JSON object",
        ))
    })?;
    let claimed: Vec<&serde_json::Value> = ["from", "sender_id"]
        .iter()
        .filter_map(|k| obj.get(*k))
        .filter(|v| !v.is_null())
        .collect();
    ensure_sender(caller, &claimed).map_err(rejection)?;
    let body: SendBody = from_value(raw)?;
    let cmd =
        SendMessage::decide(caller, &body.to, body.body, body.client_id).map_err(rejection)?;
    if api.users.by_id(cmd.to).await?.is_none() {
        return Err(Problem::not_found("the recipient does not exist"));
    }
    // Kept to tell a retry from another message under the same client_id.
    let retry_of = cmd.client_id.is_some().then(|| cmd.clone());
    let appended = api.appender.append(cmd.into_pending()).await?;
    match (&appended.event().event, &appended, retry_of) {
        (Event::MessageSent(first), Appended::Duplicate(_), Some(cmd)) if !cmd.repeats(first) => {
            Err(Problem::conflict(
                "this client_id was used for another message; use a new client_id for a new message",
            ))
        }
        (Event::MessageSent(m), _, _) => Ok((m.to_message(), appended)),
        (other, _, _) => {
            tracing::error!(
                kind = other.type_name(),
                "send de-duplicated to a non-message event"
            );
            Err(Problem::internal())
        }
    }
}

/// Mark the conversation read up to a message.
#[utoipa::path(post, path = "/v1/conversations/{peer_id}/read", tag = "messages",
    params(PeerPath),
    request_body = ReadBody,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 202, description = "Accepted and durable"),
        (status = 400, description = "Malformed JSON", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Cookie-authenticated from a foreign origin", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive in time", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "Body not `application/json`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "`up_to` is not a message of this conversation, or the peer is the caller", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "A backend is unavailable, or the message is too new to be seen yet; see Retry-After", body = ProblemDoc, content_type = "application/problem+json",
            headers(("retry-after" = u64, description = "Seconds"))),
    ))]
#[tracing::instrument(name = "mark_read", skip_all, fields(reader = %caller.user_id))]
pub async fn mark_read(
    State(api): State<CommandApi>,
    Caller(caller): Caller,
    Path(peer_id): Path<String>,
    AppJson(body): AppJson<ReadBody>,
) -> Result<Response, Problem> {
    let peer = lookup::peer(api.users.as_ref(), &peer_id).await?;
    let pending = decide_read(caller.user_id, peer.id, &body.up_to, Timestamp::now())?;
    let up_to = MessageId::parse("up_to", &body.up_to)?;
    ensure_in_conversation(
        &api,
        caller.user_id,
        up_to,
        ConversationId::between(caller.user_id, peer.id),
    )
    .await?;
    api.appender.append(pending).await?;
    metrics::counter!("parley_read_markers_total").increment(1);
    Ok(StatusCode::ACCEPTED.into_response())
}

/// How long a read marker waits for the read side to show a message it
/// does not show yet, and how young (by its id's time) such a message must
/// be to be waited for.
const READ_SIDE_WAIT: Duration = Duration::from_secs(2);
const READ_SIDE_LAG: Duration = Duration::from_secs(30);

/// 422 unless `up_to` is a message of `conversation`. The read side is the
/// only place that knows which conversation a message id belongs to (it
/// answers for the reader's own messages), and it trails the log: a client
/// may mark read a message it got 202 for a moment ago, before the
/// projector wrote it. So an id the read side does not show, but young
/// enough to be such a message, is looked up again until the projector has
/// passed the end the log had when the check began (then it is not the
/// reader's: 422), for up to [`READ_SIDE_WAIT`]; if it is still missing the
/// answer is 503 + Retry-After (retry), not 422. An unknown old id is
/// refused at once.
async fn ensure_in_conversation(
    api: &CommandApi,
    reader: UserId,
    up_to: MessageId,
    conversation: ConversationId,
) -> Result<(), Problem> {
    let not_ours = || {
        Problem::invalid(ValidationError::new(
            "up_to",
            "is not a message of this conversation",
        ))
    };
    let age_ms = Timestamp::now().millis() - up_to.timestamp().millis();
    let young = age_ms < READ_SIDE_LAG.as_millis() as i64;
    let deadline = tokio::time::Instant::now() + READ_SIDE_WAIT;
    let mut nap = Duration::from_millis(5);
    // The log's end after the first miss (it holds `up_to` if `up_to` is
    // anything the reader was answered 202 for), and whether the projector
    // had passed it before the lookup: a miss then is final.
    let mut log_end: Option<Watermark> = None;
    loop {
        let settled = match &log_end {
            Some(end) => api.log.committed(PROJECTOR_GROUP).await?.covers_all(end),
            None => false,
        };
        match api.timelines.message_of(reader, up_to).await? {
            Some(m) if m.conversation_id == conversation => return Ok(()),
            Some(_) => return Err(not_ours()),
            None if !young || settled => return Err(not_ours()),
            None if tokio::time::Instant::now() >= deadline => {
                metrics::counter!("parley_read_markers_not_visible_total").increment(1);
                return Err(Problem::busy(
                    "that message is not visible yet; retry shortly",
                    Duration::from_secs(1),
                ));
            }
            None if log_end.is_none() => log_end = Some(api.log.latest().await?),
            None => {
                tokio::time::sleep(nap).await;
                nap = (nap * 2).min(Duration::from_millis(200));
            }
        }
    }
}
