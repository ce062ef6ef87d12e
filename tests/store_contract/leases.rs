//! The shard leases (`store::ShardLeases`) of the stores replicas share:
//! one lease per shard, taken only while free or expired, renewed and
//! released only by its owner, and the live replicas counted by their
//! memberships. The embedded store has none (one process owns it).

use super::support::*;

cases!(
    a_replica_takes_free_leases_up_to_what_it_asks,
    a_renewal_keeps_what_is_held_and_counts_the_live_replicas,
    an_expired_lease_goes_to_another_replica_and_its_owner_no_longer_renews_it,
    release_and_leave_free_only_the_callers_leases,
    prepare_keeps_the_leases_of_the_same_count_and_refuses_another_while_one_is_held,
);

/// The store's leases, prepared for `count` shards at `t`.
async fn leases(db: &Store, count: u16, t: DateTime<Utc>) -> Arc<dyn ShardLeases> {
    let leases = db.leases().expect("a store replicas share has leases");
    leases
        .prepare(shard_count(count), t)
        .await
        .expect("prepare");
    leases
}

fn shard_count(count: u16) -> ShardCount {
    ShardCount::new(count).expect("a valid count")
}

fn secs(t: DateTime<Utc>, secs: i64) -> DateTime<Utc> {
    t + TimeDelta::seconds(secs)
}

async fn a_replica_takes_free_leases_up_to_what_it_asks(db: &mut Store) {
    let t = now();
    let leases = leases(db, 4, t).await;
    let a = leases
        .acquire("a", 3, secs(t, 5), t)
        .await
        .expect("acquire");
    assert_eq!(a.len(), 3);
    let b = leases
        .acquire("b", 10, secs(t, 5), t)
        .await
        .expect("acquire");
    assert_eq!(b.len(), 1, "only one was left");
    assert!(!a.contains(&b[0]));
    let c = leases
        .acquire("c", 1, secs(t, 5), t)
        .await
        .expect("acquire");
    assert_eq!(c, [] as [u16; 0], "none free");
}

async fn a_renewal_keeps_what_is_held_and_counts_the_live_replicas(db: &mut Store) {
    let t = now();
    let leases = leases(db, 4, t).await;
    let mut a = leases
        .acquire("a", 2, secs(t, 5), t)
        .await
        .expect("acquire");
    a.sort_unstable();
    let renewal = leases.renew("a", secs(t, 5), t).await.expect("renew");
    assert_eq!(
        renewal,
        Renewal {
            held: a.clone(),
            replicas: 1
        }
    );
    let renewal = leases.renew("b", secs(t, 5), t).await.expect("renew");
    assert_eq!(
        renewal,
        Renewal {
            held: vec![],
            replicas: 2
        }
    );
    // Renewed until t+10, A's leases survive what would have been expiry.
    leases
        .renew("a", secs(t, 10), secs(t, 4))
        .await
        .expect("renew");
    let later = secs(t, 6);
    let taken = leases
        .acquire("b", 4, secs(t, 20), later)
        .await
        .expect("acquire");
    assert_eq!(taken.len(), 2, "only the two A never held");
    // At t+6 B's membership (until t+5) has expired, A's (t+10) has not.
    let renewal = leases.renew("a", secs(t, 16), later).await.expect("renew");
    assert_eq!(
        renewal,
        Renewal {
            held: a,
            replicas: 1
        }
    );
}

async fn an_expired_lease_goes_to_another_replica_and_its_owner_no_longer_renews_it(
    db: &mut Store,
) {
    let t = now();
    let leases = leases(db, 2, t).await;
    leases.renew("a", secs(t, 5), t).await.expect("renew");
    assert_eq!(
        leases
            .acquire("a", 2, secs(t, 5), t)
            .await
            .expect("acquire")
            .len(),
        2
    );
    let early = leases
        .acquire("b", 2, secs(t, 9), secs(t, 4))
        .await
        .expect("acquire");
    assert_eq!(early, [] as [u16; 0], "not expired yet");
    let mut taken = leases
        .acquire("b", 2, secs(t, 11), secs(t, 6))
        .await
        .expect("acquire");
    taken.sort_unstable();
    assert_eq!(taken, [0, 1]);
    let renewal = leases
        .renew("a", secs(t, 12), secs(t, 7))
        .await
        .expect("renew");
    assert_eq!(renewal.held, [] as [u16; 0], "B holds them now");
    let renewal = leases
        .renew("b", secs(t, 12), secs(t, 7))
        .await
        .expect("renew");
    assert_eq!(renewal.held, [0, 1]);
}

async fn release_and_leave_free_only_the_callers_leases(db: &mut Store) {
    let t = now();
    let leases = leases(db, 4, t).await;
    let until = secs(t, 60);
    leases.renew("a", until, t).await.expect("renew");
    leases.renew("b", until, t).await.expect("renew");
    let a = leases.acquire("a", 2, until, t).await.expect("acquire");
    let b = leases.acquire("b", 2, until, t).await.expect("acquire");
    leases.release("a", &[a[0], b[0]]).await.expect("release");
    let c = leases.acquire("c", 4, until, t).await.expect("acquire");
    assert_eq!(c, [a[0]], "B's lease stays B's");
    leases.leave("a").await.expect("leave");
    let c = leases.acquire("c", 4, until, t).await.expect("acquire");
    assert_eq!(c, [a[1]], "what A held is free once it left");
    let renewal = leases.renew("b", until, t).await.expect("renew");
    assert_eq!(renewal.replicas, 1, "A left, and C never renewed: B alone");
}

async fn prepare_keeps_the_leases_of_the_same_count_and_refuses_another_while_one_is_held(
    db: &mut Store,
) {
    let t = now();
    let leases = leases(db, 4, t).await;
    leases
        .acquire("a", 4, secs(t, 5), t)
        .await
        .expect("acquire");
    leases
        .prepare(shard_count(4), t)
        .await
        .expect("the same count");
    assert_eq!(
        leases
            .renew("a", secs(t, 5), t)
            .await
            .expect("renew")
            .held
            .len(),
        4
    );
    match leases.prepare(shard_count(8), secs(t, 1)).await {
        Err(StoreError::ShardCount {
            stored: 4,
            configured: 8,
        }) => {}
        other => panic!("expected a refusal of the count, got {other:?}"),
    }
    // Every lease expired: the replicas stopped, and the count may change.
    leases
        .prepare(shard_count(8), secs(t, 6))
        .await
        .expect("a new count");
    let taken = leases
        .acquire("b", 8, secs(t, 20), secs(t, 6))
        .await
        .expect("acquire");
    assert_eq!(taken, (0..8).collect::<Vec<u16>>());
}
