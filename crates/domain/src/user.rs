//! Users as the outside world may see them, and credentials as it must not.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::{ids::UserId, time::Timestamp, ValidationError};

/// A login name: `^[a-z0-9_.]{3,32}$` after lower-casing, so `Alice` and
/// `alice` are one account.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub const MIN_LEN: usize = 3;
    pub const MAX_LEN: usize = 32;
    /// What [`Username::parse`] accepts, as a JSON Schema (ECMA-262)
    /// pattern: upper case is accepted and lower-cased.
    pub const PATTERN: &'static str = "^[A-Za-z0-9_.]{3,32}$";
    /// What [`Username::parse_prefix`] accepts.
    pub const PREFIX_PATTERN: &'static str = "^[A-Za-z0-9_.]{1,32}$";

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let s = raw.to_ascii_lowercase();
        let ok_len = (Self::MIN_LEN..=Self::MAX_LEN).contains(&s.len());
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
        if ok_len && ok_chars {
            Ok(Self(s))
        } else {
            Err(ValidationError::new(
                "username",
                "must be 3 to 32 characters of a-z, 0-9, '_' or '.'",
            ))
        }
    }

    /// A search prefix: the same alphabet, 1 to 32 characters.
    pub fn parse_prefix(raw: &str) -> Result<String, ValidationError> {
        let s = raw.to_ascii_lowercase();
        let ok = (1..=Self::MAX_LEN).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
        if ok {
            Ok(s)
        } else {
            Err(ValidationError::new(
                "query",
                "must be 1 to 32 characters of a-z, 0-9, '_' or '.'",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For values read back from a store that only ever held parsed names.
    pub fn from_trusted(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Username({})", self.0)
    }
}

/// The name shown to other people: 1 to 64 characters after trimming, no
/// control characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 64;
    /// What [`DisplayName::parse`] accepts: up to 64 characters once the
    /// whitespace around them is trimmed, none of them a control character.
    pub const PATTERN: &'static str = concat!(
        "^[",
        ws_class!(),
        "]*[^",
        ws_class!(),
        control_class!(),
        "](?:[^",
        control_class!(),
        "]{0,62}[^",
        ws_class!(),
        control_class!(),
        "])?[",
        ws_class!(),
        "]*$"
    );

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let s = raw.trim();
        let n = s.chars().count();
        if n == 0 || n > Self::MAX_CHARS || s.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "display_name",
                "must be 1 to 64 characters without control characters",
            ));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn from_username(u: &Username) -> Self {
        Self(u.as_str().to_owned())
    }
    pub fn from_trusted(s: String) -> Self {
        Self(s)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password in transit: 8 to 1024 bytes (of UTF-8, not characters).
/// Debug never prints it.
pub struct Password(String);

impl Password {
    pub const MIN_BYTES: usize = 8;
    pub const MAX_BYTES: usize = 1024;

    pub fn parse(raw: String) -> Result<Self, ValidationError> {
        if (Self::MIN_BYTES..=Self::MAX_BYTES).contains(&raw.len()) {
            Ok(Self(raw))
        } else {
            Err(ValidationError::new("password", "must be 8 to 1024 bytes"))
        }
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// An argon2id PHC string.
///
/// Deliberately implements neither `Serialize` nor `Display`, and its
/// `Debug` is redacted: a hash cannot reach a response or a log by accident.
/// The only way out is [`PasswordHash::as_phc`], which adapters call to
/// store it.
///
/// ```compile_fail
/// fn needs_serialize<T: serde::Serialize>() {}
/// needs_serialize::<parley_domain::PasswordHash>();
/// ```
///
/// ```compile_fail
/// fn needs_serialize<T: serde::Serialize>() {}
/// needs_serialize::<parley_domain::Credential>();
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn from_phc(s: String) -> Self {
        Self(s)
    }
    pub fn as_phc(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

/// What the credential store keeps per user. Not serializable because it
/// holds the hash; [`Credential::public`] is the view to hand out.
#[derive(Clone, Debug)]
pub struct Credential {
    pub user: PublicUser,
    pub hash: PasswordHash,
}

impl Credential {
    pub fn public(&self) -> &PublicUser {
        &self.user
    }
}

/// The public view of a user: what every route returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicUser {
    pub id: UserId,
    pub username: Username,
    pub display_name: DisplayName,
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_lower_cased_and_checked() {
        assert_eq!(Username::parse("Alice_1.x").unwrap().as_str(), "alice_1.x");
        for bad in ["ab", "", "has space", "dash-no", "ünï", &"a".repeat(33)] {
            assert_eq!(Username::parse(bad).unwrap_err().field, "username", "{bad}");
        }
        assert!(Username::parse(&"a".repeat(32)).is_ok());
    }

    #[test]
    fn passwords_are_bounded_in_bytes() {
        assert!(Password::parse("1234567".into()).is_err());
        assert!(Password::parse("12345678".into()).is_ok());
        assert!(Password::parse("x".repeat(1024)).is_ok());
        assert!(Password::parse("x".repeat(1025)).is_err());
        assert_eq!(
            format!("{:?}", Password::parse("secret-pass".into()).unwrap()),
            "Password(<redacted>)"
        );
    }

    #[test]
    fn display_names_are_trimmed() {
        assert_eq!(DisplayName::parse("  Al  ").unwrap().as_str(), "Al");
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse("a\u{7}b").is_err());
    }

    #[test]
    fn hash_debug_is_redacted() {
        let h = PasswordHash::from_phc("$argon2id$v=19$secret".into());
        assert!(!format!("{h:?}").contains("argon2"));
    }
}
