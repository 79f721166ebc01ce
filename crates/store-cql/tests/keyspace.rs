//! A keyspace dropped is gone: the store no longer connects to it, and
//! dropping it again (or one never made) is not an error.

mod common;

use common::{config, store_on};
use parley_store_cql::Cql;

#[tokio::test]
async fn a_dropped_keyspace_is_gone_and_dropping_it_again_is_fine() {
    let config = config("dropped");
    drop(store_on(&config).await);
    Cql::drop_keyspace(&config).await.expect("drop");
    assert!(
        Cql::connect(&config).await.is_err(),
        "connected to a dropped keyspace"
    );
    Cql::drop_keyspace(&config).await.expect("drop again");
    Cql::drop_keyspace(&common::config("never_made"))
        .await
        .expect("drop one never made");
}
