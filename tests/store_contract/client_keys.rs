//! Client keys: a job created with a client key is found by it; a second
//! job with the same key is refused ([`StoreError::ClientKeyTaken`]) and
//! changes nothing; the key is free again once its job is deleted.

use super::support::*;

cases!(a_client_key_names_one_job_at_most);

async fn a_client_key_names_one_job_at_most(db: &Store) {
    let first = Job {
        client_key: Some("invoice-2024-001".to_owned()),
        ..job("first", now())
    };
    db.insert(&first).await.expect("insert");
    assert_eq!(
        db.get_by_client_key("invoice-2024-001")
            .await
            .expect("by key"),
        Some(first.clone())
    );
    assert_eq!(db.get_by_client_key("other").await.expect("by key"), None);
    // Jobs without a key never collide.
    db.insert_all(&[job("a", now()), job("b", now())]).await;

    let second = Job {
        client_key: first.client_key.clone(),
        ..job("second", now())
    };
    match db.insert(&second).await {
        Err(StoreError::ClientKeyTaken(key)) => assert_eq!(key, "invoice-2024-001"),
        other => panic!("expected ClientKeyTaken, got {other:?}"),
    }
    assert_eq!(db.get(second.id).await.expect("get"), None);

    assert!(db.delete(first.id).await.expect("delete"));
    db.insert(&second).await.expect("the key is free again");
    assert_eq!(
        db.get_by_client_key("invoice-2024-001")
            .await
            .expect("by key"),
        Some(second)
    );
}
