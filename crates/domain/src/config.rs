//! Settings every role shares, independent of how they were parsed.

use std::fmt;

/// The JWT signing key. Never printed: `Debug` is redacted.
#[derive(Clone)]
pub struct JwtSecret(Vec<u8>);

impl JwtSecret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtSecret(<redacted>)")
    }
}

/// The keys that sign and verify session tokens, each named by the `kid`
/// its tokens carry. The first signs new tokens; every one verifies, so a
/// new key can be put first while tokens signed by the old one keep working
/// until the old key is removed (no one is logged out by a rotation).
#[derive(Clone)]
pub struct JwtKeys(Vec<(String, JwtSecret)>);

/// The shortest secret accepted: HS256 wants at least its hash's size.
pub const MIN_SECRET_BYTES: usize = 32;

impl JwtKeys {
    /// The id of a key given alone (`--jwt-secret`, `dev`'s own).
    pub const DEFAULT_KID: &'static str = "default";

    pub fn new(keys: Vec<(String, JwtSecret)>) -> Result<Self, String> {
        if keys.is_empty() {
            return Err("at least one key is needed".into());
        }
        for (i, (kid, secret)) in keys.iter().enumerate() {
            let ok_kid = (1..=64).contains(&kid.len())
                && kid
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok_kid {
                return Err(format!(
                    "key id {kid:?}: 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'"
                ));
            }
            if secret.expose().len() < MIN_SECRET_BYTES {
                return Err(format!(
                    "key {kid}: the secret must be at least {MIN_SECRET_BYTES} bytes"
                ));
            }
            if keys[..i].iter().any(|(k, _)| k == kid) {
                return Err(format!("key id {kid} is given twice"));
            }
        }
        Ok(Self(keys))
    }

    /// One key under [`JwtKeys::DEFAULT_KID`].
    pub fn single(secret: JwtSecret) -> Result<Self, String> {
        Self::new(vec![(Self::DEFAULT_KID.to_owned(), secret)])
    }

    /// `kid1=secret1,kid2=secret2`: the first signs. A secret may hold `=`
    /// but not `,`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let keys = spec
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|entry| {
                entry
                    .split_once('=')
                    .map(|(kid, secret)| {
                        (
                            kid.trim().to_owned(),
                            JwtSecret::new(secret.as_bytes().to_vec()),
                        )
                    })
                    .ok_or_else(|| "each key is kid=secret".to_owned())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(keys)
    }

    /// The key that signs: the first.
    pub fn signing(&self) -> (&str, &JwtSecret) {
        let (kid, secret) = &self.0[0];
        (kid, secret)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &JwtSecret)> {
        self.0.iter().map(|(k, s)| (k.as_str(), s))
    }
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(kid, _)| kid))
            .finish()
    }
}

/// How the session cookie is written.
#[derive(Clone, Copy, Debug)]
pub struct CookiePolicy {
    /// Adds `Secure`, for deployments behind TLS.
    pub secure: bool,
    pub max_age_secs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_the_first_signs_and_bad_ones_are_refused() {
        let k = JwtKeys::parse(
            "new=0123456789abcdef0123456789abcdef, old=fedcba9876543210fedcba9876543210==",
        )
        .unwrap();
        assert_eq!(k.signing().0, "new");
        assert_eq!(
            k.iter().map(|(kid, _)| kid).collect::<Vec<_>>(),
            ["new", "old"]
        );
        assert_eq!(format!("{k:?}"), r#"["new", "old"]"#, "secrets never print");
        for bad in [
            "",
            "nokid",
            "k=short",
            "a b=0123456789abcdef0123456789abcdef",
            "k=0123456789abcdef0123456789abcdef,k=0123456789abcdef0123456789abcdeX",
        ] {
            assert!(JwtKeys::parse(bad).is_err(), "{bad}");
        }
    }
}
