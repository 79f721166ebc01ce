//! Sending messages and marking conversations read.

use std::time::Instant;

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use parley_domain::{
    commands::{decide_read, ensure_sender, SendMessage, SendRejected},
    ports::Appended,
    Event, Message, Timestamp,
};
use parley_http_kit::{extract::from_value, lookup, AppJson, Caller, Problem};
use serde::{Deserialize, Serialize};

use crate::CommandApi;

#[derive(Deserialize)]
pub struct SendBody {
    to: String,
    body: String,
    client_id: Option<String>,
}

#[derive(Serialize)]
struct Accepted<'a> {
    message: &'a Message,
}

#[derive(Deserialize)]
pub struct ReadBody {
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
    let appended = api.appender.append(cmd.into_pending()).await?;
    match &appended.event().event {
        Event::MessageSent(m) => Ok((m.to_message(), appended)),
        other => {
            tracing::error!(
                kind = other.type_name(),
                "send de-duplicated to a non-message event"
            );
            Err(Problem::internal())
        }
    }
}

#[tracing::instrument(name = "mark_read", skip_all, fields(reader = %caller.user_id))]
pub async fn mark_read(
    State(api): State<CommandApi>,
    Caller(caller): Caller,
    Path(peer_id): Path<String>,
    AppJson(body): AppJson<ReadBody>,
) -> Result<Response, Problem> {
    let peer = lookup::peer(api.users.as_ref(), &peer_id).await?;
    let pending = decide_read(caller.user_id, peer.id, &body.up_to, Timestamp::now())?;
    api.appender.append(pending).await?;
    metrics::counter!("parley_read_markers_total").increment(1);
    Ok(StatusCode::ACCEPTED.into_response())
}
