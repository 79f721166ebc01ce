//! The WebSocket protocol in the OpenAPI document: the upgrade route, and
//! every frame as a schema (`ServerFrame`, `ClientFrame`).

use serde::Serialize;
use utoipa::{
    openapi::schema::{Object, ObjectBuilder, Type},
    OpenApi, ToSchema,
};

use crate::api::{uuid, MessageDoc};

/// A sync token.
fn seq() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "Sync token: opaque, valid on any instance; every frame that carries one is a point \
             to resume from (`?since=`)",
        ))
        .build()
}

/// What the server sends, as JSON text frames.
#[derive(ToSchema, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ServerFrame {
    /// First frame once authenticated. `seq` is where this socket goes on
    /// from: the `since` it was given, or the user's current point (only
    /// live frames follow).
    Ready {
        #[schema(schema_with = uuid)]
        user_id: String,
        #[schema(schema_with = seq)]
        seq: String,
    },
    /// A message to the recipient, and to the sender's other sockets.
    Message {
        message: MessageDoc,
        #[schema(schema_with = seq)]
        seq: String,
    },
    /// To the sender's sockets: a device of the recipient acknowledged it.
    Delivered {
        conversation_id: String,
        #[schema(schema_with = uuid)]
        message_id: String,
        #[schema(format = DateTime)]
        at: String,
        #[schema(schema_with = seq)]
        seq: String,
    },
    /// To the peer's and the reader's other sockets: a read marker moved.
    Read {
        conversation_id: String,
        #[schema(schema_with = uuid)]
        up_to: String,
        #[schema(schema_with = uuid)]
        by: String,
        #[schema(format = DateTime)]
        at: String,
        #[schema(schema_with = seq)]
        seq: String,
    },
    /// The backlog after `since` is complete; live frames follow.
    Synced {
        #[schema(schema_with = seq)]
        seq: String,
    },
    /// A frame the server could not use; the socket stays open.
    Error { detail: String },
    /// The answer to a `ping` frame.
    Pong,
}

/// What a client may send, as JSON text frames (at most 64 KiB each).
#[derive(ToSchema, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ClientFrame {
    /// For clients that cannot set headers: the first frame, within 5 s.
    Auth {
        token: String,
        /// Resume after this sync token.
        since: Option<String>,
    },
    /// A device received a message: the recipient's ack becomes one
    /// `delivered` receipt for the sender.
    Ack {
        #[schema(schema_with = uuid)]
        message_id: String,
    },
    Ping,
}

/// The socket: push of messages and receipts, and resuming after a drop.
///
/// Authenticate with the session cookie, `Authorization: Bearer`, or an
/// `auth` frame within 5 s. Frames are the `ServerFrame` and `ClientFrame`
/// schemas. Every `message`, `delivered` and `read` frame carries `seq`;
/// reconnecting with `?since=<the seq of the last frame processed>` (or
/// `since` in the `auth` frame) delivers every later message and receipt of
/// the user exactly once, then `synced`, then live frames. Close codes:
/// 4401 not authenticated (or the session logged out), 4409 a sync token
/// this server cannot serve (re-read the inbox over REST and connect
/// without `since`), 4008 the socket fell too far behind and 1013 the
/// instance cannot serve the backlog yet (reconnect with `since`), 4429 the
/// user holds `--max-sockets-per-user` sockets on this instance, 1009 a
/// frame over 64 KiB, 1001 the server is going away. A user's frames beyond
/// `--frame-limit-per-user` are not dropped: they wait their turn.
#[utoipa::path(
    get,
    path = "/v1/ws",
    tag = "socket",
    params(("since" = Option<String>, Query, description = "Resume after this sync token")),
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 101, description = "Switching protocols: the socket is open"),
        (status = 403, description = "Cookie-authenticated upgrade from a page on an origin \
            that is not allowed", body = crate::api::ProblemDoc,
            content_type = "application/problem+json"),
    )
)]
#[allow(dead_code)]
fn ws() {}

#[derive(OpenApi)]
#[openapi(paths(ws), components(schemas(ServerFrame, ClientFrame)))]
pub(crate) struct WsDoc;
