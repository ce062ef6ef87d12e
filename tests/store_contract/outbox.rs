//! The outbox: `with_pending_events` answers the jobs that owe events and no
//! other, at most `limit`; `set_pending_if` and `clear_pending_many` change
//! what a job owes only while it is still at the version the caller read,
//! and leave that version as it is (a later change owes its own event).
//! The order of the answer is checked by the listing area.

use super::support::*;

cases!(
    the_outbox_lists_owing_jobs_and_clears_them_at_the_read_version,
    clear_pending_many_clears_only_jobs_still_at_their_version,
);

async fn the_outbox_lists_owing_jobs_and_clears_them_at_the_read_version(db: &Store) {
    let t = now();
    let owing = |name: &str, updated: i64, pending: PendingEvents| Job {
        updated_at: t + TimeDelta::seconds(updated),
        pending,
        ..job(name, t)
    };
    let third = owing("third", 3, RUN);
    let first = owing("first", 1, CREATE);
    let none = owing("none", 0, PendingEvents::NONE);
    let second = owing("second", 2, UPDATE);
    let dead = owing("failed for good", 4, DEAD_LETTER);
    db.insert_all(&[
        third.clone(),
        first.clone(),
        none,
        second.clone(),
        dead.clone(),
    ])
    .await;

    let id = |j: &Job| j.id;
    let outbox = db
        .with_pending_events(10)
        .await
        .expect("outbox")
        .all_readable();
    assert_eq!(
        by_id(&outbox, id),
        by_id(
            &[first.clone(), second.clone(), third.clone(), dead.clone()],
            id
        )
    );
    assert_eq!(
        db.with_pending_events(2)
            .await
            .expect("outbox")
            .all_readable()
            .len(),
        2
    );
    assert!(
        db.with_pending_events(0)
            .await
            .expect("outbox")
            .all_readable()
            .is_empty()
    );

    // A version that moved on since the read: the new change owes its own event.
    assert!(
        !db.set_pending_if(first.id, first.version + 1, PendingEvents::NONE)
            .await
            .expect("stale")
    );
    assert!(
        !db.set_pending_if(JobId::new(), 0, PendingEvents::NONE)
            .await
            .expect("unknown")
    );
    assert_eq!(db.get(first.id).await.expect("get"), Some(first.clone()));
    assert!(
        db.set_pending_if(first.id, first.version, PendingEvents::NONE)
            .await
            .expect("clear")
    );
    assert_eq!(
        db.get(first.id).await.expect("get"),
        Some(Job {
            pending: PendingEvents::NONE,
            ..first.clone()
        }),
        "only the owed events change, not the version"
    );
    // Still at its version: it can be set again (what one relay pass
    // publishes of a job's events, it clears one by one).
    assert!(
        db.set_pending_if(
            second.id,
            second.version,
            PendingEvents {
                run: true,
                ..DEAD_LETTER
            }
        )
        .await
        .expect("set")
    );
    let second = Job {
        pending: PendingEvents {
            run: true,
            ..DEAD_LETTER
        },
        ..second
    };
    let outbox = db
        .with_pending_events(10)
        .await
        .expect("outbox")
        .all_readable();
    assert_eq!(
        by_id(&outbox, id),
        by_id(&[second.clone(), third, dead], id)
    );
    assert_eq!(db.get(second.id).await.expect("get"), Some(second));
}

async fn clear_pending_many_clears_only_jobs_still_at_their_version(db: &Store) {
    // Claimed first, as the service clears them: at version 1, owing every event.
    let jobs: Vec<Job> = (0..5)
        .map(|i| Job {
            pending: PendingEvents { run: false, ..ALL },
            ..job(&format!("owing {i}"), now() - TimeDelta::seconds(1))
        })
        .collect();
    db.insert_all(&jobs).await;
    let firings: Vec<(JobId, i64)> = jobs.iter().map(|j| (j.id, j.fire_token)).collect();
    let mut claimed = db.claim_many(&firings, now()).await.expect("claim");
    claimed.sort_by_key(|j| j.id);
    assert!(claimed.iter().all(|j| j.version == 1 && j.pending == ALL));

    assert!(db.clear_pending_many(&[]).await.expect("empty").is_empty());
    let mut batch: Vec<(JobId, i64)> = claimed[..4].iter().map(|j| (j.id, j.version)).collect();
    batch[2].1 -= 1; // read before the claim
    batch[3].1 += 1; // a version it does not have (yet)
    batch.push((JobId::new(), 1));
    let mut cleared = db.clear_pending_many(&batch).await.expect("clear");
    cleared.sort();
    assert_eq!(cleared, sorted_ids(&claimed[..2]));
    for (i, job) in claimed.iter().enumerate() {
        let expected = if i < 2 {
            Job {
                pending: PendingEvents::NONE,
                ..job.clone()
            }
        } else {
            job.clone()
        };
        assert_eq!(
            db.get(job.id).await.expect("get"),
            Some(expected),
            "only the owed events change, not the version"
        );
    }
    let outbox = db
        .with_pending_events(10)
        .await
        .expect("outbox")
        .all_readable();
    assert_eq!(sorted_ids(&outbox), sorted_ids(&claimed[2..]));
}
