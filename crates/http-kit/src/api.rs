//! The OpenAPI document's shared parts: the schemas of values every role
//! returns, the rules of fields several routes take (built from the
//! constants the parsers use, so the document cannot promise what the
//! server refuses), security schemes, the operational routes and the
//! WebSocket protocol.

use parley_domain::{
    ids::UUID_PATTERN, ClientId, Cursor, DisplayName, MessageBody, Password, Username,
};
use serde::Serialize;
use utoipa::{
    openapi::{
        path::{Parameter, ParameterBuilder, ParameterIn},
        schema::{KnownFormat, Object, ObjectBuilder, SchemaFormat, Type},
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
        OpenApi as Document, Required,
    },
    IntoParams, Modify, OpenApi, ToSchema,
};

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// A user id, message id or other UUID, as the ids' `parse` reads it.
pub fn uuid() -> Object {
    string()
        .format(Some(SchemaFormat::Custom("uuid".to_owned())))
        .pattern(Some(UUID_PATTERN))
        .build()
}

/// A username as registration and login take it.
pub fn username() -> Object {
    string()
        .pattern(Some(Username::PATTERN))
        .min_length(Some(Username::MIN_LEN))
        .max_length(Some(Username::MAX_LEN))
        .description(Some(
            "3 to 32 of A-Z, a-z, 0-9, '_' and '.'; stored lower-cased, so `Alice` and `alice` \
             are one account",
        ))
        .build()
}

/// A username as the server shows it.
pub fn username_shown() -> Object {
    string().pattern(Some("^[a-z0-9_.]{3,32}$")).build()
}

/// A search prefix.
pub fn username_prefix() -> Object {
    string()
        .pattern(Some(Username::PREFIX_PATTERN))
        .min_length(Some(1))
        .max_length(Some(Username::MAX_LEN))
        .description(Some(
            "1 to 32 of A-Z, a-z, 0-9, '_' and '.', matched lower-cased",
        ))
        .build()
}

/// A password. JSON Schema counts characters; the server counts bytes.
pub fn password() -> Object {
    string()
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Password)))
        .min_length(Some(Password::MIN_BYTES))
        .max_length(Some(Password::MAX_BYTES))
        .description(Some(format!(
            "{} to {} BYTES of UTF-8 (not characters: a password of non-ASCII characters holds \
             fewer than {} of them)",
            Password::MIN_BYTES,
            Password::MAX_BYTES,
            Password::MAX_BYTES
        )))
        .build()
}

/// A display name as registration takes it.
pub fn display_name() -> Object {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
        .pattern(Some(DisplayName::PATTERN))
        .description(Some(format!(
            "1 to {} characters once the whitespace around them is trimmed, no control \
             characters; the username when absent or null",
            DisplayName::MAX_CHARS
        )))
        .build()
}

/// A message body as a send takes it.
pub fn message_body() -> Object {
    string()
        .min_length(Some(1))
        .max_length(Some(MessageBody::MAX_CHARS))
        .pattern(Some(MessageBody::PATTERN))
        .description(Some(format!(
            "1 to {} characters (Unicode code points), not all whitespace",
            MessageBody::MAX_CHARS
        )))
        .build()
}

/// A send's retry key.
pub fn client_id() -> Object {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
        .pattern(Some(ClientId::PATTERN))
        .description(Some(format!(
            "Retry key, 1 to {} characters without control characters. Repeating it with the \
             same `to` and `body` returns the first message (202) and appends nothing; with \
             another `to` or `body` it is a 409.",
            ClientId::MAX_CHARS
        )))
        .build()
}

/// A history cursor.
pub fn cursor() -> Object {
    string()
        .pattern(Some(Cursor::PATTERN))
        .description(Some("Opaque: a `next_cursor` this server returned"))
        .build()
}

/// One parameter with one of the schemas above. (`#[param(schema_with)]`
/// drops `required` and the description, so parameters are built here.)
pub fn parameter(
    name: &str,
    place: ParameterIn,
    required: bool,
    description: &str,
    schema: Object,
) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(place)
        .required(if required {
            Required::True
        } else {
            Required::False
        })
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// The path segment naming the other participant.
pub struct PeerPath;

impl IntoParams for PeerPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![parameter(
            "peer_id",
            ParameterIn::Path,
            true,
            "The other participant's user id; an id naming nobody is a 404",
            uuid(),
        )]
    }
}

/// The public view of a user (`PublicUser`).
#[derive(ToSchema, Serialize)]
#[schema(as = User)]
pub struct UserDoc {
    #[schema(schema_with = uuid)]
    pub id: String,
    #[schema(schema_with = username_shown)]
    pub username: String,
    pub display_name: String,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A message as readers see it (`Message`).
#[derive(ToSchema, Serialize)]
#[schema(as = Message)]
pub struct MessageDoc {
    #[schema(schema_with = uuid)]
    pub id: String,
    /// Opaque; the same for both participants.
    pub conversation_id: String,
    #[schema(schema_with = uuid)]
    pub from: String,
    #[schema(schema_with = uuid)]
    pub to: String,
    pub body: String,
    #[schema(format = DateTime)]
    pub sent_at: String,
    /// When a device of the recipient acknowledged it.
    #[schema(format = DateTime)]
    pub delivered_at: Option<String>,
    /// When the recipient's read marker reached it.
    #[schema(format = DateTime)]
    pub read_at: Option<String>,
}

/// RFC 9457 problem details: every error.
#[derive(ToSchema, Serialize)]
#[schema(as = Problem)]
pub struct ProblemDoc {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: Option<String>,
    /// Validation failures: which field, and what is wrong with it.
    pub errors: Option<Vec<FieldErrorDoc>>,
}

#[derive(ToSchema, Serialize)]
#[schema(as = FieldError)]
pub struct FieldErrorDoc {
    pub field: String,
    pub message: String,
}

/// Adds the two ways to authenticate.
pub struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::COOKIE_NAME,
                "The session cookie (HttpOnly, SameSite=Strict). A state-changing request it \
                 authenticates from a browser page must come from the server's own origin or an \
                 allowed one (403 otherwise).",
            ))),
        );
    }
}

#[derive(ToSchema, Serialize)]
struct Health {
    status: String,
}

#[derive(ToSchema, Serialize)]
struct Readiness {
    /// `ready` or `not ready`.
    status: String,
    /// Each dependency: `ok`, `unavailable` or `connecting`.
    #[schema(value_type = Object)]
    checks: serde_json::Value,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
#[allow(dead_code)]
fn healthz() {}

/// Readiness: the log and the store this role needs answer.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready", body = Readiness),
    (status = 503, description = "Not ready (or still connecting); see Retry-After", body = Readiness),
))]
#[allow(dead_code)]
fn readyz() {}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
#[allow(dead_code)]
fn metrics() {}

#[derive(ToSchema, Serialize)]
#[schema(as = Document)]
struct DocumentDoc {
    /// The OpenAPI version.
    openapi: String,
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1", body = DocumentDoc)))]
#[allow(dead_code)]
fn openapi() {}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Parley",
        version = "1",
        description = "One-to-one chat backend. Errors are RFC 9457 `application/problem+json`. \
            Limits: bodies up to 64 KiB (413); bodies must be `application/json` (415); a request \
            whose headers or body stall is closed or answered 408; logins, registrations and sends \
            are rate-limited (429 + Retry-After); password checks beyond the hashing queue and \
            unavailable backends are 503 + Retry-After. The WebSocket protocol is under `GET /v1/ws` \
            and the `ServerFrame` and `ClientFrame` schemas."
    ),
    paths(healthz, readyz, metrics, openapi),
    components(schemas(UserDoc, MessageDoc, ProblemDoc, FieldErrorDoc)),
    modifiers(&Security)
)]
struct Shared;

/// What every role's document holds besides its routes: shared schemas,
/// security schemes, the operational routes and the WebSocket protocol.
pub fn shared() -> Document {
    let mut doc = Shared::openapi();
    doc.merge(crate::api_ws::WsDoc::openapi());
    doc
}
