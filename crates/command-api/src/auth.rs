//! Register, log in, log out: the hybrid session pattern. The token goes in
//! an HttpOnly cookie for REST and in the body for socket clients.

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use parley_domain::{
    auth::{hash_password, verify_password},
    events::UserRegistered,
    ports::PendingEvent,
    Credential, DisplayName, Event, Password, PublicUser, StoreError, Timestamp, UserId, Username,
};
use parley_http_kit::{api, api::ProblemDoc, AppJson, Caller, ClientAddr, Problem};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::CommandApi;

#[derive(Deserialize, ToSchema)]
pub struct RegisterBody {
    #[schema(schema_with = api::username)]
    username: String,
    #[schema(schema_with = api::password)]
    password: String,
    #[schema(schema_with = api::display_name)]
    display_name: Option<String>,
}

/// A malformed username or password is answered like a wrong one (401).
#[derive(Deserialize, ToSchema)]
pub struct LoginBody {
    #[schema(schema_with = api::username)]
    username: String,
    #[schema(schema_with = api::password)]
    password: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Session)]
pub(crate) struct SessionBody<'a> {
    #[schema(value_type = api::UserDoc)]
    user: &'a PublicUser,
    /// The same token as the cookie, for socket clients.
    token: &'a str,
}

fn session_response(
    api: &CommandApi,
    status: StatusCode,
    user: &PublicUser,
) -> Result<Response, Problem> {
    let (token, _) = api.auth.tokens.issue(user.id).map_err(|e| {
        tracing::error!(error = %e, "token signing failed");
        Problem::internal()
    })?;
    let cookie = api.auth.session_cookie(&token);
    Ok((
        status,
        [(header::SET_COOKIE, cookie)],
        Json(SessionBody {
            user,
            token: &token,
        }),
    )
        .into_response())
}

/// Create an account and a session.
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth",
    request_body = RegisterBody,
    responses(
        (status = 201, description = "Registered; `Set-Cookie: parley_session`", body = SessionBody,
            headers(("set-cookie" = String, description = "The session cookie"))),
        (status = 400, description = "Malformed JSON", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive in time", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The username is taken", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "Body not `application/json`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks its rule; `errors[].field` names it", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many registrations from this address; see Retry-After", body = ProblemDoc, content_type = "application/problem+json",
            headers(("retry-after" = u64, description = "Seconds"))),
        (status = 503, description = "Too many password checks at once, or a backend is unavailable; see Retry-After", body = ProblemDoc, content_type = "application/problem+json",
            headers(("retry-after" = u64, description = "Seconds"))),
    ))]
#[tracing::instrument(name = "register", skip_all)]
pub async fn register(
    State(api): State<CommandApi>,
    client: ClientAddr,
    AppJson(body): AppJson<RegisterBody>,
) -> Result<Response, Problem> {
    api.guards.register_per_address.check(&client.limit_key())?;
    let username = Username::parse(&body.username)?;
    let password = Password::parse(body.password)?;
    let display_name = match body.display_name {
        Some(d) => DisplayName::parse(&d)?,
        None => DisplayName::from_username(&username),
    };
    if api.users.by_username(&username).await?.is_some() {
        return Err(Problem::conflict("username is taken"));
    }
    let hash = api
        .guards
        .hashing
        .run(move || hash_password(&password))
        .await?
        .map_err(|e| {
            tracing::error!(error = %e, "password hashing failed");
            Problem::internal()
        })?;
    let user = PublicUser {
        id: UserId::new(),
        username,
        display_name,
        created_at: Timestamp::now(),
    };
    let credential = Credential {
        user: user.clone(),
        hash,
    };
    match api.users.create(&credential).await {
        Err(StoreError::Conflict(_)) => return Err(Problem::conflict("username is taken")),
        other => other?,
    }
    let event_user = user.clone();
    let appended = api
        .appender
        .append(PendingEvent::new(None, move |_| {
            Event::UserRegistered(UserRegistered { user: event_user })
        }))
        .await;
    if let Err(e) = appended {
        // Without its event the account would be invisible to the log's
        // consumers: undo it so the client can simply retry.
        if let Err(undo) = api.users.remove(user.id).await {
            tracing::error!(error = %undo.chain(), user = %user.id, "could not undo registration");
        }
        return Err(e.into());
    }
    metrics::counter!("parley_registrations_total").increment(1);
    tracing::info!(user = %user.id, "registered");
    session_response(&api, StatusCode::CREATED, &user)
}

/// Start a session.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth",
    request_body = LoginBody,
    responses(
        (status = 200, description = "Logged in; `Set-Cookie: parley_session`", body = SessionBody,
            headers(("set-cookie" = String, description = "The session cookie"))),
        (status = 400, description = "Malformed JSON", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Wrong username or password (the same answer either way)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive in time", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "Body not `application/json`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A field missing or of the wrong type", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many logins from this address or for this username; see Retry-After", body = ProblemDoc, content_type = "application/problem+json",
            headers(("retry-after" = u64, description = "Seconds"))),
        (status = 503, description = "Too many password checks at once, or a backend is unavailable; see Retry-After", body = ProblemDoc, content_type = "application/problem+json",
            headers(("retry-after" = u64, description = "Seconds"))),
    ))]
#[tracing::instrument(name = "login", skip_all)]
pub async fn login(
    State(api): State<CommandApi>,
    client: ClientAddr,
    AppJson(body): AppJson<LoginBody>,
) -> Result<Response, Problem> {
    api.guards.login_per_address.check(&client.limit_key())?;
    // A malformed username or password cannot match any account: answer
    // exactly like a wrong password, after the same amount of work.
    let username = Username::parse(&body.username).ok();
    if let Some(u) = &username {
        api.guards.login_per_username.check(u.as_str())?;
    }
    let password = Password::parse(body.password).ok();
    let credential = match &username {
        Some(u) => api.users.by_username(u).await?,
        None => None,
    };
    let hash = credential.as_ref().map(|c| c.hash.clone());
    let ok = match password {
        Some(p) => {
            api.guards
                .hashing
                .run(move || verify_password(&p, hash.as_ref()))
                .await?
        }
        None => false,
    };
    match credential {
        Some(c) if ok => {
            metrics::counter!("parley_logins_total", "outcome" => "ok").increment(1);
            session_response(&api, StatusCode::OK, c.public())
        }
        _ => {
            metrics::counter!("parley_logins_total", "outcome" => "refused").increment(1);
            Err(Problem::bad_credentials())
        }
    }
}

/// End the session (its token stops working everywhere) and clear the
/// cookie.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Logged out; the cookie is cleared",
            headers(("set-cookie" = String, description = "The cleared cookie"))),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Cookie-authenticated from a foreign origin", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "A backend is unavailable; see Retry-After", body = ProblemDoc, content_type = "application/problem+json",
            headers(("retry-after" = u64, description = "Seconds"))),
    ))]
pub async fn logout(
    State(api): State<CommandApi>,
    Caller(session): Caller,
) -> Result<Response, Problem> {
    api.auth.revocations.revoke(&session).await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, api.auth.cleared_cookie())],
    )
        .into_response())
}
