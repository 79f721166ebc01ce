//! Errors shared by every port, sorted the way callers must react to them.

use std::{borrow::Cow, error::Error, fmt, sync::Arc};

/// A rule a client-supplied value broke. `field` names the JSON field so the
/// client can point at it; `message` is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl Error for ValidationError {}

/// What went wrong talking to a log or a store. Adapters sort driver errors
/// into these three so the HTTP layer can answer 409, 503 or an opaque 500
/// without knowing which driver produced them. The driver's error stays
/// attached as [`Error::source`], so a log line can show the whole chain
/// ([`StoreError::chain`]) while a response shows only the category.
#[derive(Debug, Clone)]
pub enum StoreError {
    /// A uniqueness rule said no (a taken username).
    Conflict(Cause),
    /// The backend cannot be reached or is overloaded; retrying later may work.
    Unavailable(Cause),
    /// Anything else: a bug, corrupt data, a schema mismatch.
    Unexpected(Cause),
}

/// Why a [`StoreError`] happened: what Parley was doing, the driver's
/// error, or both. Shared (`Arc`) so one failed batch can answer every
/// caller waiting on it.
#[derive(Debug, Clone, Default)]
pub struct Cause {
    context: Option<Cow<'static, str>>,
    source: Option<Arc<dyn Error + Send + Sync + 'static>>,
}

impl Cause {
    /// The driver's error, as it is.
    pub fn from_source(source: impl Error + Send + Sync + 'static) -> Self {
        Self {
            context: None,
            source: Some(Arc::new(source)),
        }
    }

    /// What Parley was doing, when no driver error says it.
    pub fn msg(context: impl Into<Cow<'static, str>>) -> Self {
        Self {
            context: Some(context.into()),
            source: None,
        }
    }

    /// What Parley was doing when `source` happened.
    pub fn because(
        context: impl Into<Cow<'static, str>>,
        source: impl Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            context: Some(context.into()),
            source: Some(Arc::new(source)),
        }
    }

    pub fn context(&self) -> Option<&str> {
        self.context.as_deref()
    }
}

impl StoreError {
    pub fn conflict(source: impl Error + Send + Sync + 'static) -> Self {
        Self::Conflict(Cause::from_source(source))
    }
    pub fn unavailable(source: impl Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Cause::from_source(source))
    }
    pub fn unexpected(source: impl Error + Send + Sync + 'static) -> Self {
        Self::Unexpected(Cause::from_source(source))
    }
    pub fn conflict_msg(context: impl Into<Cow<'static, str>>) -> Self {
        Self::Conflict(Cause::msg(context))
    }
    pub fn unavailable_msg(context: impl Into<Cow<'static, str>>) -> Self {
        Self::Unavailable(Cause::msg(context))
    }
    pub fn unexpected_msg(context: impl Into<Cow<'static, str>>) -> Self {
        Self::Unexpected(Cause::msg(context))
    }

    /// The same error, saying what Parley was doing. Context added before
    /// stays, after the new one.
    pub fn context(self, context: impl Into<Cow<'static, str>>) -> Self {
        let wrap = |c: Cause| {
            let context = match c.context {
                Some(old) => Cow::Owned(format!("{}: {old}", context.into())),
                None => context.into(),
            };
            Cause {
                context: Some(context),
                source: c.source,
            }
        };
        match self {
            Self::Conflict(c) => Self::Conflict(wrap(c)),
            Self::Unavailable(c) => Self::Unavailable(wrap(c)),
            Self::Unexpected(c) => Self::Unexpected(wrap(c)),
        }
    }

    pub fn cause(&self) -> &Cause {
        match self {
            Self::Conflict(c) | Self::Unavailable(c) | Self::Unexpected(c) => c,
        }
    }

    /// This error and every source under it, for a log line.
    pub fn chain(&self) -> Chain<'_> {
        Chain(self)
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Self::Conflict(_) => "conflict",
            Self::Unavailable(_) => "backend unavailable",
            Self::Unexpected(_) => "unexpected backend error",
        };
        match &self.cause().context {
            Some(c) => write!(f, "{kind}: {c}"),
            None => f.write_str(kind),
        }
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.cause()
            .source
            .as_deref()
            .map(|e| e as &(dyn Error + 'static))
    }
}

/// An error and its sources, outermost first, separated by `: ` (what
/// logs show, so a driver's own words reach the operator).
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_error_is_the_source_and_the_chain_shows_it() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 5 s");
        let e = StoreError::unavailable(io).context("cannot read the inbox");
        assert!(matches!(e, StoreError::Unavailable(_)));
        assert_eq!(e.to_string(), "backend unavailable: cannot read the inbox");
        let source = e.source().map(|s| s.to_string());
        assert_eq!(source.as_deref(), Some("no answer in 5 s"));
        assert_eq!(
            e.chain().to_string(),
            "backend unavailable: cannot read the inbox: no answer in 5 s"
        );
        let bare = StoreError::unexpected_msg("lock poisoned");
        assert!(bare.source().is_none());
        assert_eq!(
            bare.chain().to_string(),
            "unexpected backend error: lock poisoned"
        );
    }

    #[test]
    fn context_stacks_outermost_first_and_keeps_the_kind() {
        let e = StoreError::conflict_msg("username is taken").context("cannot register");
        assert!(matches!(e, StoreError::Conflict(_)));
        assert_eq!(
            e.to_string(),
            "conflict: cannot register: username is taken"
        );
    }
}
