//! Sessions (signed JWTs) and password hashing (argon2id).

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};
use std::{sync::OnceLock, time::Duration};
use uuid::Uuid;

use crate::{config::JwtKeys, ids::UserId, time::Timestamp, user::Password, user::PasswordHash};

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    /// Session id: what logout revokes.
    jti: String,
    iat: i64,
    exp: i64,
}

/// A verified session: the only source of "who is asking".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub user_id: UserId,
    pub session_id: String,
    /// Unix seconds the token was issued at: no logout of this session can
    /// be older, so a revocation list need not be read further back.
    pub issued_at: i64,
    /// Unix seconds after which the token is dead anyway; revocations need
    /// not be remembered past it.
    pub expires_at: i64,
}

/// Issues and verifies HS256 session tokens. Tokens name the key that
/// signed them (`kid`); one naming a key this service does not hold is
/// refused. A token without a `kid` (issued before keys had ids) is tried
/// against every key.
#[derive(Clone)]
pub struct TokenService {
    signing: (String, EncodingKey),
    decoding: std::sync::Arc<[(String, DecodingKey)]>,
    validation: Validation,
    ttl: Duration,
    /// Tokens already verified. A client sends the same token with every
    /// request, and checking its signature and claims each time is a
    /// visible share of the CPU of a send or a history page. The same text
    /// always verifies the same way; only the expiry is checked again.
    verified: std::sync::Arc<std::sync::RwLock<std::collections::HashMap<String, Session>>>,
}

/// Verified tokens remembered before the cache starts over.
const VERIFIED_REMEMBERED: usize = 50_000;

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl TokenService {
    pub fn new(keys: &JwtKeys, ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let (kid, secret) = keys.signing();
        Self {
            signing: (kid.to_owned(), EncodingKey::from_secret(secret.expose())),
            decoding: keys
                .iter()
                .map(|(kid, s)| (kid.to_owned(), DecodingKey::from_secret(s.expose())))
                .collect(),
            validation,
            ttl,
            verified: Default::default(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new token for `user`, with a fresh session id.
    pub fn issue(&self, user: UserId) -> Result<(String, Session), jsonwebtoken::errors::Error> {
        let now = Timestamp::now().millis() / 1000;
        let exp = now + self.ttl.as_secs() as i64;
        let jti = Uuid::new_v4().simple().to_string();
        let claims = Claims {
            sub: user.to_string(),
            jti: jti.clone(),
            iat: now,
            exp,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.signing.0.clone());
        let token = encode(&header, &claims, &self.signing.1)?;
        Ok((
            token,
            Session {
                user_id: user,
                session_id: jti,
                issued_at: now,
                expires_at: exp,
            },
        ))
    }

    /// `None` for anything but a well-signed, unexpired token of ours.
    pub fn verify(&self, token: &str) -> Option<Session> {
        let now = Timestamp::now().millis() / 1000;
        let known = self
            .verified
            .read()
            .ok()
            .and_then(|v| v.get(token).cloned());
        if let Some(session) = known {
            // The same leeway as the full check.
            return (session.expires_at + self.validation.leeway as i64 >= now).then_some(session);
        }
        let kid = decode_header(token).ok()?.kid;
        let data = self
            .decoding
            .iter()
            .filter(|(k, _)| kid.as_deref().is_none_or(|kid| kid == k))
            .find_map(|(_, key)| decode::<Claims>(token, key, &self.validation).ok())?;
        let user_id = UserId::parse("sub", &data.claims.sub).ok()?;
        let session = Session {
            user_id,
            session_id: data.claims.jti,
            issued_at: data.claims.iat,
            expires_at: data.claims.exp,
        };
        if let Ok(mut v) = self.verified.write() {
            if v.len() >= VERIFIED_REMEMBERED {
                v.clear();
            }
            v.insert(token.to_owned(), session.clone());
        }
        Some(session)
    }
}

/// argon2id with the crate's default (OWASP-recommended) parameters.
/// CPU-heavy: call from a blocking thread.
pub fn hash_password(password: &Password) -> Result<PasswordHash, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    let phc = Argon2::default().hash_password(password.expose().as_bytes(), &salt)?;
    Ok(PasswordHash::from_phc(phc.to_string()))
}

/// Checks `password` against `hash`. With `hash = None` (no such user) it
/// still spends the time of one verification, so response time does not
/// tell whether a username exists.
pub fn verify_password(password: &Password, hash: Option<&PasswordHash>) -> bool {
    static DUMMY: OnceLock<Option<PasswordHash>> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| {
        Password::parse("parley-timing-equaliser".into())
            .ok()
            .and_then(|p| hash_password(&p).ok())
    });
    let (phc, real) = match (hash, dummy) {
        (Some(h), _) => (h.as_phc(), true),
        (None, Some(d)) => (d.as_phc(), false),
        (None, None) => return false,
    };
    let Ok(parsed) = argon2::PasswordHash::new(phc) else {
        return false;
    };
    let ok = Argon2::default()
        .verify_password(password.expose().as_bytes(), &parsed)
        .is_ok();
    ok && real
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JwtSecret;

    fn keys(spec: &str) -> JwtKeys {
        JwtKeys::parse(spec).unwrap()
    }

    fn svc() -> TokenService {
        TokenService::new(
            &keys("default=0123456789abcdef0123456789abcdef"),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn tokens_name_their_key_and_survive_a_rotation() {
        let old = TokenService::new(
            &keys("k1=0123456789abcdef0123456789abcdef"),
            Duration::from_secs(60),
        );
        let (tok, session) = old.issue(UserId::new()).unwrap();
        assert_eq!(decode_header(&tok).unwrap().kid.as_deref(), Some("k1"));
        let rotated = TokenService::new(
            &keys("k2=fedcba9876543210fedcba9876543210,k1=0123456789abcdef0123456789abcdef"),
            Duration::from_secs(60),
        );
        assert_eq!(rotated.verify(&tok), Some(session));
        let (new, _) = rotated.issue(UserId::new()).unwrap();
        assert_eq!(decode_header(&new).unwrap().kid.as_deref(), Some("k2"));
        assert!(
            old.verify(&new).is_none(),
            "k2 is unknown to the old service"
        );
        // The same secret under another id does not verify it either.
        let renamed = TokenService::new(
            &keys("k9=0123456789abcdef0123456789abcdef"),
            Duration::from_secs(60),
        );
        assert!(renamed.verify(&tok).is_none());
    }

    #[test]
    fn a_token_from_before_key_ids_is_tried_against_every_key() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let claims = Claims {
            sub: UserId::new().to_string(),
            jti: "j".into(),
            iat: Timestamp::now().millis() / 1000,
            exp: Timestamp::now().millis() / 1000 + 60,
        };
        let legacy = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap();
        let rotated = TokenService::new(
            &JwtKeys::new(vec![
                (
                    "k2".into(),
                    JwtSecret::new(b"fedcba9876543210fedcba9876543210".to_vec()),
                ),
                ("default".into(), JwtSecret::new(secret.to_vec())),
            ])
            .unwrap(),
            Duration::from_secs(60),
        );
        assert!(rotated.verify(&legacy).is_some());
    }

    #[test]
    fn tokens_verify_and_carry_the_subject() {
        let u = UserId::new();
        let (tok, session) = svc().issue(u).unwrap();
        assert_eq!(svc().verify(&tok), Some(session.clone()));
        assert_eq!(session.user_id, u);
    }

    #[test]
    fn foreign_or_tampered_tokens_are_refused() {
        let (tok, _) = svc().issue(UserId::new()).unwrap();
        let other = TokenService::new(
            &keys("default=another-secret-another-secret-xx"),
            Duration::from_secs(60),
        );
        assert!(other.verify(&tok).is_none());
        let mut bad = tok.clone();
        bad.push('x');
        assert!(svc().verify(&bad).is_none());
        assert!(svc().verify("").is_none());
    }

    #[test]
    fn a_remembered_token_still_expires() {
        let s = svc();
        let (tok, session) = s.issue(UserId::new()).unwrap();
        assert_eq!(s.verify(&tok), Some(session.clone()));
        assert_eq!(
            s.verify(&tok),
            Some(session.clone()),
            "second check, from memory"
        );
        if let Ok(mut v) = s.verified.write() {
            if let Some(known) = v.get_mut(&tok) {
                known.expires_at = Timestamp::now().millis() / 1000 - 10;
            }
        }
        assert_eq!(s.verify(&tok), None);
    }

    #[test]
    fn expired_tokens_are_refused() {
        let s = TokenService::new(
            &keys("default=0123456789abcdef0123456789abcdef"),
            Duration::from_secs(0),
        );
        let mut claims_exp = s.clone();
        claims_exp.validation.leeway = 0;
        let (tok, _) = s.issue(UserId::new()).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert!(claims_exp.verify(&tok).is_none());
    }

    #[test]
    fn passwords_hash_and_verify() {
        let p = Password::parse("correct horse".into()).unwrap();
        let h = hash_password(&p).unwrap();
        assert!(h.as_phc().starts_with("$argon2id$"));
        assert!(verify_password(&p, Some(&h)));
        assert!(!verify_password(
            &Password::parse("wrong horse".into()).unwrap(),
            Some(&h)
        ));
        assert!(!verify_password(&p, None));
    }
}
