//! Listing with filters (`JobDB::list` with a `JobFilter`): each filter
//! admits exactly the jobs `JobFilter::admits` admits, alone and together;
//! `total` counts the jobs admitted, not all; pages of a filtered listing
//! hold the admitted jobs and none twice. `paused` is checked against the
//! jobs it must admit by name as well, since its stores read it out of the
//! stored recurrence. The tally (`JobDB::tally`) counts what `JobTally::add`
//! counts, and each of its facets is the total of that facet's listing.
//! Compared as sets of ids, so that
//! the area runs on polodb too (which ignores `sort`; order is `listing`'s).

use super::recurring::every_minute;
use super::support::*;

cases!(
    each_filter_admits_exactly_its_jobs_and_counts_them,
    paused_admits_paused_recurring_jobs_and_not_paused_every_other,
    the_tally_counts_every_job_by_each_facet_as_the_filters_do,
);

/// Page `number` of `size` jobs that `filter` admits, all readable.
async fn listing(db: &Store, filter: &JobFilter, number: i64, size: i64) -> JobsPage {
    let page = db.list(page(number, size), filter).await.expect("list");
    assert!(page.unreadable.is_empty(), "{:?}", page.unreadable);
    page
}

/// The ids of the jobs `filter` lists on a page of 100, and its total.
async fn listed(db: &Store, filter: &JobFilter) -> (Vec<JobId>, u64) {
    let page = listing(db, filter, 1, 100).await;
    (sorted_ids(&page.jobs), page.total)
}

/// A filter, its fields checked.
fn filter(
    status: Option<JobStatus>,
    job_type: Option<JobType>,
    kind: Option<ScheduleKind>,
    name: Option<&str>,
) -> JobFilter {
    JobFilter::new(status, job_type, kind, None, name.map(str::to_owned)).expect("a valid filter")
}

/// `filter` with `paused` set as well.
fn paused(paused: bool, mut filter: JobFilter) -> JobFilter {
    filter.paused = Some(paused);
    filter
}

async fn each_filter_admits_exactly_its_jobs_and_counts_them(db: &Store) {
    let due = now() + TimeDelta::hours(1);
    let mut sms = job("Reminder text", due);
    sms.spec.job_type = JobType::Sms;
    let jobs = vec![
        job("Weekly report", due),
        job_in("Failed report", JobStatus::Failed, due),
        sms,
        every_minute("nightly REPORT", None),
        every_minute("cleanup", None),
    ];
    db.insert_all(&jobs).await;
    let cases = [
        filter(None, None, None, None),
        filter(Some(JobStatus::Failed), None, None, None),
        filter(Some(JobStatus::Scheduled), None, None, None),
        filter(None, Some(JobType::Sms), None, None),
        filter(None, None, Some(ScheduleKind::Recurring), None),
        filter(None, None, Some(ScheduleKind::Once), None),
        filter(None, None, None, Some("report")),
        filter(None, None, None, Some("ORT")),
        filter(
            None,
            Some(JobType::Email),
            Some(ScheduleKind::Once),
            Some("rep"),
        ),
        filter(Some(JobStatus::Running), None, None, None),
        // Regular-expression and LIKE characters are taken literally.
        filter(None, None, None, Some(".*")),
        filter(None, None, None, Some("%")),
    ];
    for filter in cases {
        let admitted: Vec<&Job> = jobs.iter().filter(|job| filter.admits(job)).collect();
        let expected = sorted_ids(admitted.iter().copied());
        let count = expected.len() as u64;
        assert_eq!(listed(db, &filter).await, (expected, count), "{filter:?}");
    }

    // Pages of a filtered listing: every admitted job once, the total on each.
    let reports = filter(None, None, None, Some("report"));
    let mut paged = Vec::new();
    for number in 1..=3 {
        let page = listing(db, &reports, number, 1).await;
        assert_eq!((page.total, page.jobs.len()), (3, 1), "page {number}");
        paged.extend(page.jobs);
    }
    assert_eq!(sorted_ids(&paged), listed(db, &reports).await.0);
}

async fn paused_admits_paused_recurring_jobs_and_not_paused_every_other(db: &Store) {
    let due = now() + TimeDelta::hours(1);
    let paused_now = |name: &str| {
        every_minute(name, None)
            .with_paused(true, now())
            .expect("a recurring job pauses")
    };
    let jobs = vec![
        job("Weekly report", due),
        job_in("Failed report", JobStatus::Failed, due),
        every_minute("nightly REPORT", None),
        paused_now("paused report"),
        paused_now("paused cleanup"),
    ];
    db.insert_all(&jobs).await;
    let named = |names: &[&str]| {
        sorted_ids(
            jobs.iter()
                .filter(|job| names.contains(&job.spec.name.as_str())),
        )
    };
    let recurring = Some(ScheduleKind::Recurring);
    let once = Some(ScheduleKind::Once);
    let cases = [
        (
            paused(true, filter(None, None, None, None)),
            named(&["paused report", "paused cleanup"]),
        ),
        (
            paused(false, filter(None, None, None, None)),
            named(&["Weekly report", "Failed report", "nightly REPORT"]),
        ),
        (
            paused(true, filter(None, None, None, Some("REPORT"))),
            named(&["paused report"]),
        ),
        (
            paused(false, filter(None, None, None, Some("report"))),
            named(&["Weekly report", "Failed report", "nightly REPORT"]),
        ),
        (
            paused(false, filter(Some(JobStatus::Failed), None, None, None)),
            named(&["Failed report"]),
        ),
        (
            paused(true, filter(Some(JobStatus::Scheduled), None, None, None)),
            named(&["paused report", "paused cleanup"]),
        ),
        (
            paused(true, filter(None, None, recurring, None)),
            named(&["paused report", "paused cleanup"]),
        ),
        (
            paused(false, filter(None, None, recurring, None)),
            named(&["nightly REPORT"]),
        ),
        (
            paused(false, filter(None, None, once, None)),
            named(&["Weekly report", "Failed report"]),
        ),
        (paused(true, filter(None, None, once, None)), Vec::new()),
        (
            paused(true, filter(None, Some(JobType::Sms), None, None)),
            Vec::new(),
        ),
    ];
    for (filter, expected) in cases {
        let admitted = sorted_ids(jobs.iter().filter(|job| filter.admits(job)));
        assert_eq!(admitted, expected, "the rule: {filter:?}");
        let count = expected.len() as u64;
        assert_eq!(listed(db, &filter).await, (expected, count), "{filter:?}");
    }

    // Pages of a listing filtered on paused: every admitted job once, and
    // the total on each page.
    let not_paused = paused(false, filter(None, None, None, None));
    let mut paged = Vec::new();
    for (number, places) in [(1, 2), (2, 1)] {
        let page = listing(db, &not_paused, number, 2).await;
        assert_eq!((page.total, page.jobs.len()), (3, places), "page {number}");
        paged.extend(page.jobs);
    }
    assert_eq!(sorted_ids(&paged), listed(db, &not_paused).await.0);
}

async fn the_tally_counts_every_job_by_each_facet_as_the_filters_do(db: &Store) {
    assert_eq!(db.tally().await.expect("tally"), JobTally::default());
    let due = now() + TimeDelta::hours(1);
    let mut sms = job_in("Reminder text", JobStatus::Running, due);
    sms.spec.job_type = JobType::Sms;
    let jobs = vec![
        job("Weekly report", due),
        job_in("Failed report", JobStatus::Failed, due),
        job_in("Sent report", JobStatus::Succeeded, due),
        sms,
        every_minute("nightly", None),
        every_minute("held", None)
            .with_paused(true, now())
            .expect("a recurring job pauses"),
    ];
    db.insert_all(&jobs).await;
    let tally = db.tally().await.expect("tally");
    assert_eq!(tally, JobTally::of(&jobs));
    assert_eq!(
        (
            tally.total,
            tally.failed,
            tally.sms,
            tally.recurring,
            tally.paused
        ),
        (6, 1, 1, 2, 1)
    );
    let facet = |status, job_type, kind, paused| JobFilter::facet(status, job_type, kind, paused);
    for (counted, filter) in [
        (tally.total, facet(None, None, None, None)),
        (
            tally.scheduled,
            facet(Some(JobStatus::Scheduled), None, None, None),
        ),
        (
            tally.running,
            facet(Some(JobStatus::Running), None, None, None),
        ),
        (
            tally.succeeded,
            facet(Some(JobStatus::Succeeded), None, None, None),
        ),
        (
            tally.failed,
            facet(Some(JobStatus::Failed), None, None, None),
        ),
        (tally.email, facet(None, Some(JobType::Email), None, None)),
        (tally.sms, facet(None, Some(JobType::Sms), None, None)),
        (
            tally.recurring,
            facet(None, None, Some(ScheduleKind::Recurring), None),
        ),
        (tally.paused, facet(None, None, None, Some(true))),
    ] {
        assert_eq!(listed(db, &filter).await.1, counted, "{filter:?}");
    }
}
