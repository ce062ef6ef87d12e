//! Conversions of the recurring-job additions to `proto.JobsService`: a
//! `Recurrence` message to the domain's timing and policies (each field
//! checked on its own [`Field`], unset fields meaning their documented
//! defaults), creations with a client key, and back to the wire.

use chrono::{DateTime, TimeDelta, Utc};
use prost_types::Timestamp;

use super::{
    convert::{time, timestamp},
    proto,
    retry::policy_of,
};
use crate::{
    domain::{
        ClientKey, Error, Field, JobId, JobSpec,
        recurrence::{
            CatchUp, CatchUpMode, DEFAULT_CATCH_UP_MAX, Overlap, Recurrence, RecurrenceSpec,
        },
        retry::RetryPolicy,
        schedule::{
            Bounds, CronExpression, CronSchedule, DstPolicy, IntervalSchedule, Jitter, Occurrence,
            OccurrenceKind, Pass, Schedule, Timing, parse_time_zone,
        },
    },
    service::NewJob,
};

/// How many occurrences a preview lists when the request does not say.
pub const DEFAULT_PREVIEW_COUNT: usize = 10;

/// The timing and policies of a `Recurrence` message, for a job created
/// (or updated) at `now` (the default anchor of an interval), with
/// intervals of at least `min_interval`.
pub fn recurrence_spec(
    msg: proto::Recurrence,
    min_interval: TimeDelta,
    now: DateTime<Utc>,
) -> Result<RecurrenceSpec, Error> {
    let schedule = schedule(&msg, min_interval, now)?;
    let optional = |field, ts: Option<Timestamp>| ts.map(|ts| time(field, ts)).transpose();
    let max_runs =
        match msg.max_runs {
            0 => None,
            n => Some(u64::try_from(n).map_err(|_| {
                Error::invalid(Field::MaxRuns, format!("must be at least 1, got {n}"))
            })?),
        };
    let bounds = Bounds::new(
        optional(Field::StartTime, msg.start_time)?,
        optional(Field::EndTime, msg.end_time)?,
        max_runs,
    )?;
    let jitter = TimeDelta::try_milliseconds(msg.jitter_ms)
        .ok_or_else(|| Error::invalid(Field::Jitter, "out of range"))?;
    let timing = Timing::new(schedule, bounds, Jitter::new(jitter)?)?;
    let max = match msg.catch_up_max {
        0 => DEFAULT_CATCH_UP_MAX,
        n => u32::try_from(n).map_err(|_| {
            Error::invalid(Field::CatchUpMax, format!("must be at least 1, got {n}"))
        })?,
    };
    let mode = match msg.catch_up.as_str() {
        "" => CatchUp::default().mode(),
        name => CatchUpMode::parse(name, max)?,
    };
    let window = match msg.catch_up_window_seconds {
        0 => CatchUp::default().window(),
        secs => TimeDelta::try_seconds(secs)
            .ok_or_else(|| Error::invalid(Field::CatchUpWindow, "out of range"))?,
    };
    Ok(RecurrenceSpec {
        timing,
        catch_up: CatchUp::new(mode, window)?,
        overlap: match msg.overlap.as_str() {
            "" => Overlap::default(),
            name => name.parse()?,
        },
    })
}

/// The cron or interval schedule of a `Recurrence`: exactly one is set.
fn schedule(
    msg: &proto::Recurrence,
    min_interval: TimeDelta,
    now: DateTime<Utc>,
) -> Result<Schedule, Error> {
    match (msg.cron_expression.is_empty(), msg.interval_seconds) {
        (false, 0) => Ok(Schedule::Cron(CronSchedule {
            expression: CronExpression::parse(&msg.cron_expression)?,
            time_zone: parse_time_zone(if msg.time_zone.is_empty() {
                "UTC"
            } else {
                &msg.time_zone
            })?,
            dst: DstPolicy {
                repeated: policy(&msg.dst_repeated)?,
                skipped: policy(&msg.dst_skipped)?,
            },
        })),
        (true, 0) => Err(Error::invalid(
            Field::CronExpression,
            "a recurrence needs cron_expression or interval_seconds",
        )),
        (true, secs) => {
            for (field, set) in [
                (Field::TimeZone, !msg.time_zone.is_empty()),
                (Field::DstRepeated, !msg.dst_repeated.is_empty()),
                (Field::DstSkipped, !msg.dst_skipped.is_empty()),
            ] {
                if set {
                    return Err(Error::invalid(field, "applies only to cron schedules"));
                }
            }
            let every = TimeDelta::try_seconds(secs)
                .ok_or_else(|| Error::invalid(Field::Interval, "out of range"))?;
            let anchor = match msg.anchor_time {
                Some(ts) => time(Field::AnchorTime, ts)?,
                None => now,
            };
            Ok(Schedule::Interval(IntervalSchedule::new(
                every,
                anchor,
                min_interval,
            )?))
        }
        (false, _) => Err(Error::invalid(
            Field::Interval,
            "set either cron_expression or interval_seconds, not both",
        )),
    }
}

/// A DST policy by name, its default when empty.
fn policy<P: std::str::FromStr<Err = Error> + Default>(name: &str) -> Result<P, Error> {
    if name.is_empty() {
        Ok(P::default())
    } else {
        name.parse()
    }
}

/// The recurrence a CreateJob or UpdateJob request asks for, validated; a
/// recurring job without a `schedule_time` gets `now` (its first
/// occurrence decides when it fires).
fn recurrence_of(
    msg: Option<proto::Recurrence>,
    schedule_time: &mut Option<Timestamp>,
    min_interval: TimeDelta,
    now: DateTime<Utc>,
) -> Result<Option<RecurrenceSpec>, Error> {
    let recurrence = msg
        .map(|msg| recurrence_spec(msg, min_interval, now))
        .transpose()?;
    if recurrence.is_some() && schedule_time.is_none() {
        *schedule_time = Some(timestamp(now));
    }
    Ok(recurrence)
}

/// The creation a CreateJob request asks for. A recurring job's
/// `schedule_time` may be unset (its first occurrence decides).
pub fn new_job(
    mut req: proto::CreateJobRequest,
    min_interval: TimeDelta,
    default_retry: &RetryPolicy,
    now: DateTime<Utc>,
) -> Result<NewJob, Error> {
    let retry = policy_of(req.retry_policy.take(), default_retry)?;
    let recurrence = recurrence_of(
        req.recurrence.take(),
        &mut req.schedule_time,
        min_interval,
        now,
    )?;
    let client_key = match std::mem::take(&mut req.client_key) {
        key if key.is_empty() => None,
        key => Some(ClientKey::validated(key)?),
    };
    Ok(NewJob {
        spec: JobSpec::try_from(req)?,
        recurrence,
        client_key,
        retry,
        requested_at: Some(now),
    })
}

/// What an UpdateJob request asks for.
pub struct JobUpdate {
    /// The job.
    pub id: JobId,
    /// Its new client fields.
    pub spec: JobSpec,
    /// Its recurrence, if it is (or becomes) recurring.
    pub recurrence: Option<RecurrenceSpec>,
    /// Its own retry policy, if it has one.
    pub retry: Option<RetryPolicy>,
}

/// The update an UpdateJob request asks for.
pub fn update_of(
    mut req: proto::UpdateJobRequest,
    min_interval: TimeDelta,
    default_retry: &RetryPolicy,
    now: DateTime<Utc>,
) -> Result<JobUpdate, Error> {
    let retry = policy_of(req.retry_policy.take(), default_retry)?;
    let recurrence = recurrence_of(
        req.recurrence.take(),
        &mut req.schedule_time,
        min_interval,
        now,
    )?;
    let (id, spec) = <(JobId, JobSpec)>::try_from(req)?;
    Ok(JobUpdate {
        id,
        spec,
        recurrence,
        retry,
    })
}

/// A recurrence as the wire shows it.
pub fn recurrence_message(spec: &RecurrenceSpec) -> proto::Recurrence {
    let timing = &spec.timing;
    let mut msg = proto::Recurrence {
        start_time: timing.bounds().start().map(timestamp),
        end_time: timing.bounds().end().map(timestamp),
        max_runs: timing
            .bounds()
            .max_runs()
            .map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX)),
        jitter_ms: timing.jitter().bound().num_milliseconds(),
        catch_up: spec.catch_up.mode().as_str().to_owned(),
        catch_up_max: match spec.catch_up.mode() {
            CatchUpMode::Each { max } => i32::try_from(max).unwrap_or(i32::MAX),
            _ => 0,
        },
        catch_up_window_seconds: spec.catch_up.window().num_seconds(),
        overlap: spec.overlap.as_str().to_owned(),
        ..Default::default()
    };
    match timing.schedule() {
        Schedule::Cron(cron) => {
            msg.cron_expression = cron.expression.as_str().to_owned();
            msg.time_zone = cron.time_zone.name().to_owned();
            msg.dst_repeated = cron.dst.repeated.as_str().to_owned();
            msg.dst_skipped = cron.dst.skipped.as_str().to_owned();
        }
        Schedule::Interval(interval) => {
            msg.interval_seconds = interval.every().num_seconds();
            msg.anchor_time = Some(timestamp(interval.anchor()));
        }
        Schedule::Once { .. } => {}
    }
    msg
}

/// Adds a job's client key and, for a recurring job, its recurrence to
/// its wire form.
pub fn add_recurrence(
    wire: &mut proto::Job,
    recurrence: Option<&Recurrence>,
    client_key: Option<String>,
) {
    wire.client_key = client_key.unwrap_or_default();
    let Some(rec) = recurrence else {
        return;
    };
    wire.recurrence = Some(recurrence_message(&rec.spec));
    wire.paused = rec.paused;
    wire.next_occurrence = rec.next.map(timestamp);
    if let Some(last) = rec.last {
        wire.last_outcome = proto::JobStatus::from(last.outcome.job_status()).into();
        wire.last_occurrence = Some(timestamp(last.occurrence));
    }
    wire.runs = i64::try_from(rec.runs).unwrap_or(i64::MAX);
    wire.missed = i64::try_from(rec.missed).unwrap_or(i64::MAX);
}

/// An occurrence as the wire shows it.
pub fn occurrence_message(occurrence: &Occurrence) -> proto::Occurrence {
    proto::Occurrence {
        time: Some(timestamp(occurrence.at)),
        kind: match occurrence.kind {
            OccurrenceKind::Regular => "regular",
            OccurrenceKind::Repeated(Pass::First) => "repeated-first",
            OccurrenceKind::Repeated(Pass::Second) => "repeated-second",
            OccurrenceKind::Shifted { .. } => "shifted",
        }
        .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn a_recurrence_reads_back_from_its_wire_form() {
        let now = at("2030-01-07T08:59:30Z");
        let second = TimeDelta::seconds(1);
        for msg in [
            proto::Recurrence {
                cron_expression: "0 9 * * MON-FRI".into(),
                time_zone: "Europe/London".into(),
                dst_repeated: "both".into(),
                jitter_ms: 1500,
                catch_up: "each".into(),
                catch_up_max: 3,
                overlap: "keep-one".into(),
                max_runs: 7,
                ..Default::default()
            },
            proto::Recurrence {
                interval_seconds: 90,
                end_time: Some(timestamp(at("2031-01-01T00:00:00Z"))),
                catch_up_window_seconds: 60,
                ..Default::default()
            },
        ] {
            let spec = recurrence_spec(msg, second, now).unwrap();
            let wire = recurrence_message(&spec);
            assert_eq!(recurrence_spec(wire, second, now).unwrap(), spec);
        }
    }

    #[test]
    fn unset_fields_mean_the_defaults() {
        let now = at("2030-01-07T08:59:30Z");
        let spec = recurrence_spec(
            proto::Recurrence {
                interval_seconds: 60,
                ..Default::default()
            },
            TimeDelta::seconds(1),
            now,
        )
        .unwrap();
        assert_eq!(spec.catch_up, CatchUp::default());
        assert_eq!(spec.overlap, Overlap::Skip);
        assert_eq!(
            spec.timing.to_string(),
            "interval every=60s anchor=2030-01-07T08:59:30Z"
        );
    }
}
