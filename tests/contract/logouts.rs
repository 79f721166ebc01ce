//! Logouts: each process keeps the list in memory and reads only what is
//! new, so a logout through one process reaches the others within about a
//! second, and a process started later knows the earlier ones.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use parley_domain::{
    auth::Session, logouts::LogoutList, ports::SessionRevocations, Timestamp, UserId,
};

use crate::stores::Store;

/// A session issued a minute ago, valid for another hour.
fn session() -> Session {
    let now = Timestamp::now().millis() / 1000;
    Session {
        user_id: UserId::new(),
        session_id: format!("s{}", UserId::new()),
        issued_at: now - 60,
        expires_at: now + 3600,
    }
}

async fn revoked(list: &LogoutList, s: &Session) -> bool {
    list.is_revoked(s).await.expect("is_revoked")
}

#[tokio::test]
async fn a_logout_through_one_process_reaches_the_others() {
    for (kind, store) in Store::all().await {
        let process = || LogoutList::new(Arc::clone(&store.logouts()));
        let (here, elsewhere) = (process(), process());
        let (gone, kept) = (session(), session());
        // The other process has read the list and answers from it now.
        assert!(!revoked(&elsewhere, &gone).await, "{kind}");
        here.revoke(&gone).await.expect("revoke");
        assert!(
            revoked(&here, &gone).await,
            "{kind}: the process that logged out knows"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !revoked(&elsewhere, &gone).await {
            assert!(
                Instant::now() < deadline,
                "{kind}: the other process never learnt of the logout"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let later = process();
        assert!(
            revoked(&later, &gone).await,
            "{kind}: a process started later knows"
        );
        for list in [&here, &elsewhere, &later] {
            assert!(!revoked(list, &kept).await, "{kind}: another session stays");
        }
    }
}
