//! Decorators around the store ports, written once for every backend.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use async_trait::async_trait;

use crate::{ports::UserStore, Credential, PublicUser, StoreError, UserId, Username};

/// Users kept before the cache is cleared and refills.
const USERS_KEPT: usize = 100_000;

/// A [`UserStore`] that keeps every public user it finds: a registered
/// user's public view never changes, and command-api and ws-push look the
/// same few users up on every send, ack and socket. Only `remove` (a
/// registration undone) forgets one.
pub struct CachedUsers {
    inner: Arc<dyn UserStore>,
    found: RwLock<HashMap<UserId, PublicUser>>,
}

impl CachedUsers {
    pub fn new(inner: Arc<dyn UserStore>) -> Self {
        Self {
            inner,
            found: RwLock::new(HashMap::new()),
        }
    }

    fn remember(&self, u: &PublicUser) {
        if let Ok(mut found) = self.found.write() {
            if found.len() >= USERS_KEPT {
                found.clear();
            }
            found.insert(u.id, u.clone());
        }
    }
}

#[async_trait]
impl UserStore for CachedUsers {
    async fn create(&self, credential: &Credential) -> Result<(), StoreError> {
        self.inner.create(credential).await
    }

    async fn remove(&self, id: UserId) -> Result<(), StoreError> {
        if let Ok(mut found) = self.found.write() {
            found.remove(&id);
        }
        self.inner.remove(id).await
    }

    async fn by_username(&self, username: &Username) -> Result<Option<Credential>, StoreError> {
        self.inner.by_username(username).await
    }

    async fn by_id(&self, id: UserId) -> Result<Option<PublicUser>, StoreError> {
        let kept = self.found.read().ok().and_then(|f| f.get(&id).cloned());
        if kept.is_some() {
            return Ok(kept);
        }
        let found = self.inner.by_id(id).await?;
        if let Some(u) = &found {
            self.remember(u);
        }
        Ok(found)
    }

    async fn search_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<PublicUser>, StoreError> {
        self.inner.search_prefix(prefix, limit).await
    }
}
