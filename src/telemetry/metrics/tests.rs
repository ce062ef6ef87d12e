use super::*;

fn value_of(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn counters_and_histograms_render_with_their_labels() {
    let metrics = Metrics::new();
    metrics.job_created();
    metrics.job_created();
    metrics.job_fired(1500, 1);
    metrics.job_fired(0, 3);
    metrics.job_fired(0, 2);
    metrics.job_failed(FailReason::Misfire);
    metrics.job_dead_lettered();
    metrics.rpc_handled("CreateJob", tonic::Code::Ok, Duration::from_millis(3));
    metrics.event_published("topic-job-run");
    metrics.run_published(40);
    metrics.set_consumer_lag("topic-job-run-result", 0, 7);
    let text = metrics.render(42);
    assert_eq!(value_of(&text, JOBS_CREATED), Some(2.0));
    assert_eq!(value_of(&text, ARMED_TIMERS), Some(42.0));
    assert_eq!(value_of(&text, &format!("{FIRE_LATENESS}_sum")), Some(1.5));
    assert_eq!(
        value_of(&text, &format!("{RUN_ATTEMPTS}{{attempt=\"first\"}}")),
        Some(1.0)
    );
    assert_eq!(
        value_of(&text, &format!("{RUN_ATTEMPTS}{{attempt=\"retry\"}}")),
        Some(2.0)
    );
    assert_eq!(value_of(&text, JOBS_DEAD_LETTERED), Some(1.0));
    assert_eq!(
        value_of(
            &text,
            &format!("{RUN_PUBLISH_LATENESS}_bucket{{le=\"0.05\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        value_of(
            &text,
            &format!("{RUN_PUBLISH_LATENESS}_bucket{{le=\"0.025\"}}")
        ),
        Some(0.0)
    );
    assert_eq!(
        value_of(&text, &format!("{JOBS_FAILED}{{reason=\"misfire\"}}")),
        Some(1.0)
    );
    assert_eq!(
        value_of(
            &text,
            &format!("{RPC_REQUESTS}{{code=\"OK\",method=\"CreateJob\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        value_of(
            &text,
            &format!("{CONSUMER_LAG}{{partition=\"0\",topic=\"topic-job-run-result\"}}")
        ),
        Some(7.0)
    );
}

#[test]
fn subscribers_are_counted_open_dropped_and_missing_events() {
    let metrics = Metrics::new();
    metrics.subscriber_opened();
    metrics.subscriber_opened();
    metrics.subscriber_closed();
    metrics.subscriber_dropped(SubscriberDrop::Stalled);
    metrics.subscriber_dropped(SubscriberDrop::Shutdown);
    metrics.subscriber_dropped(SubscriberDrop::Shutdown);
    metrics.subscriber_missed(7);
    let text = metrics.render(0);
    assert_eq!(value_of(&text, SUBSCRIBERS), Some(1.0));
    assert_eq!(value_of(&text, SUBSCRIBER_EVENTS_MISSED), Some(7.0));
    for (reason, count) in [("stalled", 1.0), ("shutdown", 2.0)] {
        assert_eq!(
            value_of(
                &text,
                &format!("{SUBSCRIBERS_DROPPED}{{reason=\"{reason}\"}}")
            ),
            Some(count)
        );
    }
}

#[test]
fn two_instances_count_apart() {
    let first = Metrics::new();
    let second = Metrics::new();
    first.job_created();
    assert_eq!(value_of(&second.render(0), JOBS_CREATED), Some(0.0));
}

#[test]
fn every_name_is_exported() {
    let metrics = Metrics::new();
    // Label-less series show at once; labelled ones once a label set is used.
    metrics.rpc_handled("GetJob", tonic::Code::NotFound, Duration::ZERO);
    metrics.http_handled("/v1/jobs", "GET", 200, Duration::ZERO);
    metrics.job_failed(FailReason::Result);
    metrics.event_published("t");
    metrics.event_failed("t");
    metrics.result_skipped("malformed");
    metrics.result_dead_lettered("malformed");
    metrics.set_consumer_lag("t", 0, 0);
    metrics.store_failed("get", "unavailable");
    metrics.subscriber_dropped(SubscriberDrop::Stalled);
    let text = metrics.render(0);
    for name in NAMES {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing from:\n{text}"
        );
    }
}
