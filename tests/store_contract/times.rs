//! Times are kept to the millisecond, the precision of
//! `scheduler_service::domain::now`: a time finer than that reads back cut
//! to the millisecond, whichever call wrote it (insert, `replace_if`, a
//! claim, a result), and a claimed job is answered as it reads back.

use super::support::*;

cases!(every_time_written_is_kept_to_the_millisecond);

async fn every_time_written_is_kept_to_the_millisecond(db: &Store) {
    let precise = DateTime::from_timestamp(1_800_000_000, 987_654_321).expect("valid time");
    let ms = precise.trunc_subsecs(3);
    let job = Job {
        created_at: precise,
        updated_at: precise,
        ..job("precise", precise)
    };
    db.insert(&job).await.expect("insert");
    let read = db.get(job.id).await.expect("get").expect("found");
    assert_eq!(read.spec.schedule_time, ms);
    assert_eq!(read.created_at, ms);
    assert_eq!(read.updated_at, ms);

    let later = precise + TimeDelta::microseconds(2_500);
    let moved = read.rescheduled(spec("moved", later), later);
    assert!(
        db.replace_if(&moved, read.version, &[])
            .await
            .expect("replace")
    );
    let read = db.get(job.id).await.expect("get").expect("found");
    assert_eq!(read.spec.schedule_time, later.trunc_subsecs(3));
    assert_eq!(read.updated_at, later.trunc_subsecs(3));

    let claimed_at = later + TimeDelta::microseconds(1_700);
    let claimed = db
        .claim(job.id, moved.fire_token, claimed_at)
        .await
        .expect("claim")
        .expect("claimed");
    assert_eq!(claimed.updated_at, claimed_at.trunc_subsecs(3));
    assert_eq!(db.get(job.id).await.expect("get"), Some(claimed));

    let done_at = claimed_at + TimeDelta::microseconds(1_300);
    db.store_result(
        job.id,
        &RunReport::of(ResultStatus::Succeeded, None),
        done_at,
    )
    .await
    .expect("result");
    let read = db.get(job.id).await.expect("get").expect("found");
    assert_eq!(read.updated_at, done_at.trunc_subsecs(3));
}
