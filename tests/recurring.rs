//! Recurring jobs end to end, through `proto.JobsService` and Kafka, on
//! PostgreSQL, with the service on a manual clock: each occurrence of a
//! cron job fires once and its result returns the job to SCHEDULED; pause,
//! resume with catch-up, trigger and preview; idempotent creation; bad
//! input named by field; a per-minute job across New York's autumn
//! transition; and catch-up after a restart.

mod common;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::{
    EventReader, postgres_uri, spawn_app_on_clock, spawn_app_with_on_clock, test_settings,
    timestamp,
};
use scheduler_service::{
    broker::JobEvent,
    clock::ManualClock,
    config::vars,
    grpc::{
        proto,
        scheduler::v1::{
            EventKind, ReportResultRequest, SubscribeRequest, job_events_client::JobEventsClient,
            subscribe_response::Item,
        },
    },
};
use tonic::Code;

/// Bounds a hang only.
const HANG: Duration = Duration::from_secs(90);

fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("a time")
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// The test's overrides: PostgreSQL.
fn on_postgres() -> Vec<(&'static str, String)> {
    vec![(vars::DATABASE_URI, postgres_uri())]
}

fn overrides(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, String)> {
    let mut all = on_postgres();
    all.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    all
}

fn borrowed<'a>(vars: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn cron(expression: &str, time_zone: &str) -> proto::Recurrence {
    proto::Recurrence {
        cron_expression: expression.to_owned(),
        time_zone: time_zone.to_owned(),
        ..Default::default()
    }
}

fn request(name: &str, recurrence: proto::Recurrence) -> proto::CreateJobRequest {
    proto::CreateJobRequest {
        name: name.to_owned(),
        job_type: proto::JobType::Email.into(),
        job_data: r#"{"Subject":"s"}"#.to_owned(),
        recurrence: Some(recurrence),
        ..Default::default()
    }
}

/// A service on PostgreSQL and a reader of its run topic.
struct Setup {
    app: common::TestApp,
    runs: EventReader,
}

impl Setup {
    async fn start(clock: &ManualClock, extra: &[(&'static str, &'static str)]) -> Self {
        let vars = overrides(extra);
        Self::around(spawn_app_on_clock(&borrowed(&vars), clock).await)
    }

    fn around(app: common::TestApp) -> Self {
        let runs = EventReader::new(&app.settings.topics.job_run.name);
        Setup { app, runs }
    }

    async fn create(&mut self, request: proto::CreateJobRequest) -> String {
        self.app
            .client
            .create_job(request)
            .await
            .expect("CreateJob")
            .into_inner()
            .id
    }

    async fn get(&mut self, id: &str) -> proto::Job {
        common::get_job(&mut self.app.client, id).await
    }

    async fn next_run(&self, id: &str) -> JobEvent {
        let (run, others) = self.runs.next_for(id, HANG).await;
        assert!(others.is_empty(), "runs of other jobs: {others:?}");
        let run = run.unwrap_or_else(|| panic!("job {id} fired"));
        // The header names the same firing as the JSON's ScheduledKey.
        let firing_key = format!("{id}:{}", run.event.fire_token);
        assert_eq!(run.headers.get("firing-key"), Some(&firing_key));
        run.event
    }

    /// Reports `status` for `run` and waits until the job took it.
    async fn finish(&mut self, run: &JobEvent, status: proto::JobStatus) {
        let outcome = JobEventsClient::new(self.app.channel.clone())
            .report_result(ReportResultRequest {
                id: run.id.clone(),
                status: status.into(),
                scheduled_key: Some(run.fire_token),
                ..Default::default()
            })
            .await
            .expect("ReportResult")
            .into_inner()
            .outcome;
        assert_eq!(outcome, "stored", "{run:?}");
    }

    /// Waits until GetJob of `id` satisfies `done`; returns the job.
    async fn wait_for(&mut self, id: &str, done: impl Fn(&proto::Job) -> bool) -> proto::Job {
        let deadline = tokio::time::Instant::now() + HANG;
        loop {
            let job = self.get(id).await;
            if done(&job) {
                return job;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never reached: {job:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn next_occurrence(job: &proto::Job) -> Option<DateTime<Utc>> {
    job.next_occurrence
        .map(|ts| DateTime::from_timestamp(ts.seconds, 0).expect("a time"))
}

#[tokio::test]
async fn a_cron_job_fires_each_occurrence_once_and_returns_to_scheduled() {
    let clock = ManualClock::new(at("2030-01-07T08:59:30Z"));
    let mut setup = Setup::start(&clock, &[]).await;
    let id = setup
        .create(request("every minute", cron("* * * * *", "UTC")))
        .await;
    let created = setup.get(&id).await;
    assert_eq!(created.status(), proto::JobStatus::Scheduled);
    assert_eq!(next_occurrence(&created), Some(at("2030-01-07T09:00:00Z")));
    let mut keys = Vec::new();
    for minute in 0..3 {
        let due = at("2030-01-07T09:00:00Z") + TimeDelta::minutes(minute);
        clock.set(due);
        let run = setup.next_run(&id).await;
        assert_eq!(run.occurrence.as_deref(), Some(rfc3339(due).as_str()));
        assert_eq!(run.occurrences, None, "on time: no catch-up list");
        keys.push(run.fire_token);
        let running = setup.get(&id).await;
        assert_eq!(running.status(), proto::JobStatus::Running);
        assert_eq!(next_occurrence(&running), Some(due + TimeDelta::minutes(1)));
        setup.finish(&run, proto::JobStatus::Succeeded).await;
        let done = setup
            .wait_for(&id, |job| job.status() == proto::JobStatus::Scheduled)
            .await;
        assert_eq!(done.last_outcome(), proto::JobStatus::Succeeded);
        assert_eq!(done.runs, minute + 1);
    }
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 3, "a ScheduledKey per occurrence");
    setup.app.stop().await;
    let extra = setup.runs.rest().await;
    assert!(extra.is_empty(), "each occurrence ran once: {extra:?}");
}

#[tokio::test]
async fn a_paused_job_catches_up_once_on_resume_and_can_be_triggered() {
    let clock = ManualClock::new(at("2030-01-07T08:59:30Z"));
    let mut setup = Setup::start(&clock, &[]).await;
    let id = setup
        .create(request("paused", cron("* * * * *", "UTC")))
        .await;
    let paused = setup
        .app
        .client
        .pause_job(proto::PauseJobRequest { id: id.clone() })
        .await
        .expect("PauseJob")
        .into_inner();
    assert!(paused.paused);
    // The same run, live on JobEvents.
    let mut stream = JobEventsClient::new(setup.app.channel.clone())
        .subscribe(SubscribeRequest {
            kinds: vec![EventKind::Run.into()],
            ..Default::default()
        })
        .await
        .expect("Subscribe")
        .into_inner();
    // Three occurrences pass while it is paused.
    clock.set(at("2030-01-07T09:02:30Z"));
    let resumed = setup
        .app
        .client
        .resume_job(proto::ResumeJobRequest { id: id.clone() })
        .await
        .expect("ResumeJob")
        .into_inner();
    assert!(!resumed.paused);
    // Catch-up `once` (the default): one run stands for the three.
    let run = setup.next_run(&id).await;
    let missed: Vec<String> = (0..3)
        .map(|m| rfc3339(at("2030-01-07T09:00:00Z") + TimeDelta::minutes(m)))
        .collect();
    assert_eq!(run.occurrences.as_ref(), Some(&missed));
    assert_eq!(run.occurrence.as_ref(), missed.last());
    let live = tokio::time::timeout(HANG, stream.message())
        .await
        .expect("a live event")
        .expect("the stream")
        .and_then(|response| response.item);
    let Some(Item::Event(live)) = live else {
        panic!("a run event: {live:?}")
    };
    assert_eq!(live.scheduled_key, run.fire_token);
    let at_seconds = |ts: Option<prost_types::Timestamp>| ts.map(|ts| ts.seconds);
    assert_eq!(
        at_seconds(live.occurrence),
        Some(at("2030-01-07T09:02:00Z").timestamp())
    );
    assert_eq!(live.occurrences.len(), 3);
    // A trigger while the run is in flight is refused; after its result,
    // it runs at once with a key of its own, and the schedule is unchanged.
    let refused = setup
        .app
        .client
        .trigger_job(proto::TriggerJobRequest { id: id.clone() })
        .await
        .expect_err("a run is in flight");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    setup.finish(&run, proto::JobStatus::Failed).await;
    setup
        .wait_for(&id, |job| job.status() == proto::JobStatus::Scheduled)
        .await;
    let triggered = setup
        .app
        .client
        .trigger_job(proto::TriggerJobRequest { id: id.clone() })
        .await
        .expect("TriggerJob")
        .into_inner();
    assert_eq!(triggered.status(), proto::JobStatus::Running);
    let extra = setup.next_run(&id).await;
    assert_ne!(extra.fire_token, run.fire_token);
    assert_eq!(
        next_occurrence(&triggered),
        Some(at("2030-01-07T09:03:00Z"))
    );

    setup.app.stop().await;
}

#[tokio::test]
async fn preview_lists_the_next_occurrences_of_a_job_or_of_an_unsaved_recurrence() {
    let clock = ManualClock::new(at("2030-01-07T09:02:30Z"));
    let mut setup = Setup::start(&clock, &[]).await;
    let id = setup
        .create(request("previewed", cron("* * * * *", "UTC")))
        .await;
    // The next occurrences of the job, and of an expression not yet saved.
    let preview = setup
        .app
        .client
        .preview_schedule(proto::PreviewScheduleRequest {
            id: id.clone(),
            count: 3,
            ..Default::default()
        })
        .await
        .expect("PreviewSchedule")
        .into_inner();
    let times: Vec<i64> = preview
        .occurrences
        .iter()
        .map(|o| o.time.expect("time").seconds)
        .collect();
    let expected: Vec<i64> = (3..6)
        .map(|m| (at("2030-01-07T09:00:00Z") + TimeDelta::minutes(m)).timestamp())
        .collect();
    assert_eq!(times, expected);
    let weekdays = setup
        .app
        .client
        .preview_schedule(proto::PreviewScheduleRequest {
            recurrence: Some(cron("0 9 * * MON-FRI", "Europe/London")),
            count: 6,
            ..Default::default()
        })
        .await
        .expect("PreviewSchedule of a recurrence")
        .into_inner();
    let days: Vec<String> = weekdays
        .occurrences
        .iter()
        .map(|o| {
            let t = DateTime::from_timestamp(o.time.expect("time").seconds, 0).expect("time");
            rfc3339(t)
        })
        .collect();
    // From Monday 09:02:30 UTC: Tuesday to Friday, then Monday and Tuesday.
    assert_eq!(
        days,
        [
            "2030-01-08T09:00:00Z",
            "2030-01-09T09:00:00Z",
            "2030-01-10T09:00:00Z",
            "2030-01-11T09:00:00Z",
            "2030-01-14T09:00:00Z",
            "2030-01-15T09:00:00Z"
        ]
    );
    setup.app.stop().await;
}

#[tokio::test]
async fn a_creation_repeated_with_its_client_key_returns_the_same_job() {
    let clock = ManualClock::new(at("2030-01-07T08:59:30Z"));
    let mut setup = Setup::start(&clock, &[]).await;
    let keyed = proto::CreateJobRequest {
        client_key: "report-2030-01".to_owned(),
        ..request("monthly report", cron("@monthly", "Europe/Paris"))
    };
    let first = setup.create(keyed.clone()).await;
    assert_eq!(setup.create(keyed.clone()).await, first);
    let changed = proto::CreateJobRequest {
        name: "another report".to_owned(),
        ..keyed
    };
    let status = setup
        .app
        .client
        .create_job(changed)
        .await
        .expect_err("other content");
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(setup.get(&first).await.client_key, "report-2030-01");
    setup.app.stop().await;
}

/// Recurrences that break a rule, the start of the error each gets and a
/// word it says.
fn bad_recurrences() -> Vec<(proto::Recurrence, &'static str, &'static str)> {
    let interval = |secs| proto::Recurrence {
        interval_seconds: secs,
        ..Default::default()
    };
    vec![
        (
            cron("61 * * * *", "UTC"),
            "invalid cron_expression",
            "minute",
        ),
        (
            cron("0 0 30 2 *", "UTC"),
            "invalid cron_expression",
            "never",
        ),
        (
            cron("* * * * *", "Mars/Olympus"),
            "invalid time_zone",
            "IANA",
        ),
        (interval(5), "invalid interval", "at least 10s"),
        (interval(-1), "invalid interval", ""),
        (
            proto::Recurrence::default(),
            "invalid cron_expression",
            "interval_seconds",
        ),
        (
            proto::Recurrence {
                interval_seconds: 60,
                ..cron("* * * * *", "")
            },
            "invalid interval",
            "not both",
        ),
        (
            proto::Recurrence {
                catch_up: "sometimes".to_owned(),
                ..cron("* * * * *", "UTC")
            },
            "invalid catch_up",
            "sometimes",
        ),
        (
            proto::Recurrence {
                overlap: "maybe".to_owned(),
                ..cron("* * * * *", "UTC")
            },
            "invalid overlap",
            "maybe",
        ),
        (
            proto::Recurrence {
                dst_repeated: "twice".to_owned(),
                ..cron("* * * * *", "UTC")
            },
            "invalid dst_repeated",
            "twice",
        ),
        (
            proto::Recurrence {
                start_time: Some(timestamp(at("2030-02-01T00:00:00Z"))),
                end_time: Some(timestamp(at("2030-01-01T00:00:00Z"))),
                ..cron("* * * * *", "UTC")
            },
            "invalid end_time",
            "before start_time",
        ),
        (
            proto::Recurrence {
                jitter_ms: -5,
                ..cron("* * * * *", "UTC")
            },
            "invalid jitter",
            "",
        ),
        (
            proto::Recurrence {
                catch_up_window_seconds: 30 * 24 * 3600,
                ..cron("* * * * *", "UTC")
            },
            "invalid catch_up_window",
            "",
        ),
    ]
}

#[tokio::test]
async fn bad_recurrences_are_invalid_arguments_that_name_the_field() {
    let clock = ManualClock::new(at("2030-01-07T08:59:30Z"));
    let mut setup = Setup::start(&clock, &[(vars::SCHEDULER_MIN_INTERVAL_SECS, "10")]).await;
    let cases = bad_recurrences();
    for (recurrence, prefix, detail) in cases {
        let status = setup
            .app
            .client
            .create_job(request("bad", recurrence.clone()))
            .await
            .expect_err("refused");
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{recurrence:?}: {status:?}"
        );
        assert!(
            status.message().starts_with(prefix),
            "{prefix}: {}",
            status.message()
        );
        assert!(
            status.message().contains(detail),
            "{detail}: {}",
            status.message()
        );
    }
    let bad_key = proto::CreateJobRequest {
        client_key: "a\nb".to_owned(),
        ..request("bad key", cron("* * * * *", "UTC"))
    };
    let status = setup
        .app
        .client
        .create_job(bad_key)
        .await
        .expect_err("refused");
    assert!(
        status.message().starts_with("invalid client_key"),
        "{status:?}"
    );
    let too_many = setup
        .app
        .client
        .preview_schedule(proto::PreviewScheduleRequest {
            recurrence: Some(cron("* * * * *", "UTC")),
            count: 5_000,
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert!(
        too_many.message().starts_with("invalid count"),
        "{too_many:?}"
    );
    setup.app.stop().await;
}

#[tokio::test]
async fn a_per_minute_job_in_new_york_runs_each_local_minute_once_when_the_clocks_go_back() {
    // 2024-11-03: 01:59:59 EDT (05:59:59Z) is followed by 01:00 EST
    // (06:00Z). Under `first` (the default) each local minute runs once,
    // at its first instant: the repeated hour does not run again.
    let clock = ManualClock::new(at("2024-11-03T05:57:30Z"));
    let mut setup = Setup::start(&clock, &[]).await;
    let id = setup
        .create(request("per minute", cron("* * * * *", "America/New_York")))
        .await;
    for (due, next) in [
        ("2024-11-03T05:58:00Z", "2024-11-03T05:59:00Z"),
        // 01:59 EDT: the next local minute, 02:00, is 07:00Z.
        ("2024-11-03T05:59:00Z", "2024-11-03T07:00:00Z"),
        ("2024-11-03T07:00:00Z", "2024-11-03T07:01:00Z"),
    ] {
        if due == "2024-11-03T07:00:00Z" {
            // Through the repeated hour first: nothing is due in it.
            clock.set(at("2024-11-03T06:30:00Z"));
            assert_eq!(next_occurrence(&setup.get(&id).await), Some(at(due)));
        }
        clock.set(at(due));
        let run = setup.next_run(&id).await;
        assert_eq!(run.occurrence.as_deref(), Some(due));
        let running = setup.get(&id).await;
        assert_eq!(next_occurrence(&running), Some(at(next)));
        setup.finish(&run, proto::JobStatus::Succeeded).await;
        setup
            .wait_for(&id, |job| job.status() == proto::JobStatus::Scheduled)
            .await;
    }
    setup.app.stop().await;
    let extra = setup.runs.rest().await;
    assert!(extra.is_empty(), "no run in the repeated hour: {extra:?}");
}

#[tokio::test]
async fn occurrences_missed_while_the_service_was_down_run_per_the_catch_up_policy() {
    let clock = ManualClock::new(at("2030-01-07T08:59:30Z"));
    let vars = overrides(&[]);
    let settings = test_settings(&borrowed(&vars));
    let mut setup = Setup::around(spawn_app_with_on_clock(settings.clone(), &clock).await);
    let once = setup
        .create(request("once", cron("* * * * *", "UTC")))
        .await;
    let each = setup
        .create(request(
            "each",
            proto::Recurrence {
                catch_up: "each".to_owned(),
                catch_up_max: 2,
                overlap: "run".to_owned(),
                ..cron("* * * * *", "UTC")
            },
        ))
        .await;
    setup.app.stop().await;
    // Down from 08:59:30 to 09:03:30: four occurrences missed.
    clock.set(at("2030-01-07T09:03:30Z"));
    let mut setup = Setup::around(spawn_app_with_on_clock(settings, &clock).await);
    let mut runs: Vec<JobEvent> = Vec::new();
    while runs.len() < 3 {
        let run = setup.runs.next(HANG).await.expect("catch-up runs");
        runs.push(run.event);
    }
    let of = |id: &str| -> Vec<&JobEvent> { runs.iter().filter(|r| r.id == id).collect() };
    let minutes: Vec<String> = (0..4)
        .map(|m| rfc3339(at("2030-01-07T09:00:00Z") + TimeDelta::minutes(m)))
        .collect();
    // `once`: one run for all four.
    let once_runs = of(&once);
    assert_eq!(once_runs.len(), 1, "{runs:?}");
    assert_eq!(once_runs[0].occurrences.as_ref(), Some(&minutes));
    // `each` at most 2: the last two, one run each.
    let each_runs: Vec<Option<&str>> = of(&each).iter().map(|r| r.occurrence.as_deref()).collect();
    assert_eq!(
        each_runs,
        [Some(minutes[2].as_str()), Some(minutes[3].as_str())]
    );
    let job = setup.get(&each).await;
    assert_eq!((job.runs, job.missed), (2, 2));
    setup.app.stop().await;
    let extra = setup.runs.rest().await;
    assert!(extra.is_empty(), "{extra:?}");
}

#[tokio::test]
async fn a_per_minute_job_in_new_york_runs_once_at_three_when_the_clocks_go_forward() {
    // 2024-03-10: 01:59:59 EST (06:59:59Z) is followed by 03:00 EDT
    // (07:00Z). Under `next-valid` (the default) the local minutes 02:00 to
    // 02:59 run once, at 03:00, which does not run a second time.
    let clock = ManualClock::new(at("2024-03-10T06:58:30Z"));
    let mut setup = Setup::start(&clock, &[]).await;
    let id = setup
        .create(request("per minute", cron("* * * * *", "America/New_York")))
        .await;
    for (due, next) in [
        ("2024-03-10T06:59:00Z", "2024-03-10T07:00:00Z"),
        ("2024-03-10T07:00:00Z", "2024-03-10T07:01:00Z"),
        ("2024-03-10T07:01:00Z", "2024-03-10T07:02:00Z"),
    ] {
        clock.set(at(due));
        let run = setup.next_run(&id).await;
        assert_eq!(run.occurrence.as_deref(), Some(due));
        assert_eq!(next_occurrence(&setup.get(&id).await), Some(at(next)));
        setup.finish(&run, proto::JobStatus::Succeeded).await;
        setup
            .wait_for(&id, |job| job.status() == proto::JobStatus::Scheduled)
            .await;
    }
    setup.app.stop().await;
    let extra = setup.runs.rest().await;
    assert!(extra.is_empty(), "{extra:?}");
}

#[tokio::test]
async fn keep_one_holds_an_occurrence_due_during_a_run_until_its_result() {
    let clock = ManualClock::new(at("2030-01-07T08:59:30Z"));
    // A window loader that looks only every half hour: the held occurrence
    // must be armed by the result itself.
    let mut setup = Setup::start(&clock, &[(vars::SCHEDULER_LOOK_AHEAD_SECS, "3600")]).await;
    let keep_one = proto::Recurrence {
        overlap: "keep-one".to_owned(),
        ..cron("* * * * *", "UTC")
    };
    let id = setup.create(request("keep one", keep_one)).await;
    clock.set(at("2030-01-07T09:00:00Z"));
    let first = setup.next_run(&id).await;
    // 09:01 comes while the 09:00 run has no result: it is held.
    clock.set(at("2030-01-07T09:01:10Z"));
    let held = setup
        .wait_for(&id, |job| {
            job.updated_time
                .is_some_and(|t| t.seconds > at("2030-01-07T09:01:00Z").timestamp())
        })
        .await;
    assert_eq!(held.status(), proto::JobStatus::Running);
    assert_eq!(held.runs, 1);
    setup.finish(&first, proto::JobStatus::Succeeded).await;
    // The result releases it: it runs at once, for 09:01.
    let second = setup.next_run(&id).await;
    assert_eq!(second.occurrence.as_deref(), Some("2030-01-07T09:01:00Z"));
    setup.app.stop().await;
}

#[tokio::test]
async fn update_job_makes_a_job_recurring_or_one_shot() {
    let clock = ManualClock::new(at("2030-01-07T08:59:30Z"));
    let mut setup = Setup::start(&clock, &[]).await;
    let one_shot = proto::CreateJobRequest {
        schedule_time: Some(timestamp(at("2030-02-01T00:00:00Z"))),
        recurrence: None,
        ..request("one-shot", proto::Recurrence::default())
    };
    let id = setup.create(one_shot.clone()).await;
    assert!(setup.get(&id).await.recurrence.is_none());
    let update = |recurrence| proto::UpdateJobRequest {
        id: id.clone(),
        name: one_shot.name.clone(),
        schedule_time: one_shot.schedule_time,
        job_type: one_shot.job_type,
        job_data: one_shot.job_data.clone(),
        recurrence,
        ..Default::default()
    };
    setup
        .app
        .client
        .update_job(update(Some(cron("@hourly", "Asia/Kolkata"))))
        .await
        .expect("UpdateJob to recurring");
    let recurring = setup.get(&id).await;
    let wire = recurring.recurrence.clone().expect("a recurrence");
    assert_eq!(
        (wire.cron_expression.as_str(), wire.time_zone.as_str()),
        ("@hourly", "Asia/Kolkata")
    );
    assert_eq!(
        (wire.catch_up.as_str(), wire.overlap.as_str()),
        ("once", "skip")
    );
    // Kolkata is UTC+05:30: its hours start at half past in UTC.
    assert_eq!(
        next_occurrence(&recurring),
        Some(at("2030-01-07T09:30:00Z"))
    );
    setup
        .app
        .client
        .update_job(update(None))
        .await
        .expect("UpdateJob to one-shot");
    let again = setup.get(&id).await;
    assert!(again.recurrence.is_none() && again.next_occurrence.is_none());
    assert_eq!(again.schedule_time, one_shot.schedule_time);
    setup.app.stop().await;
}

#[tokio::test]
async fn reflection_lists_the_new_methods_and_fields() {
    use prost::Message;
    use tonic_reflection::pb::v1;
    let clock = ManualClock::new(at("2030-01-07T08:59:30Z"));
    let setup = Setup::start(&clock, &[]).await;
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1::server_reflection_request::MessageRequest::FileContainingSymbol(
                "proto.JobsService".to_owned(),
            ),
        ),
    };
    let response =
        v1::server_reflection_client::ServerReflectionClient::new(setup.app.channel.clone())
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("reflection")
            .into_inner()
            .message()
            .await
            .expect("stream")
            .expect("a response");
    let Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        response.message_response
    else {
        panic!("unexpected reflection response {response:?}");
    };
    let files: Vec<prost_types::FileDescriptorProto> = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).expect("a file"))
        .collect();
    let job_proto = files
        .iter()
        .find(|f| f.package() == "proto")
        .expect("job.proto");
    let methods: Vec<&str> = job_proto.service[0]
        .method
        .iter()
        .map(|m| m.name())
        .collect();
    for added in ["PauseJob", "ResumeJob", "TriggerJob", "PreviewSchedule"] {
        assert!(methods.contains(&added), "{added}: {methods:?}");
    }
    let message = |name: &str| {
        job_proto
            .message_type
            .iter()
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("message {name}"))
    };
    let fields = |name: &str| -> Vec<String> {
        message(name)
            .field
            .iter()
            .map(|f| f.name().to_owned())
            .collect()
    };
    assert!(fields("CreateJobRequest").contains(&"recurrence".to_owned()));
    assert!(fields("CreateJobRequest").contains(&"client_key".to_owned()));
    assert!(fields("Job").contains(&"next_occurrence".to_owned()));
    assert!(fields("Recurrence").contains(&"cron_expression".to_owned()));
    setup.app.stop().await;
}
