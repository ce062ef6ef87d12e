//! Metrics and traces of a job's whole life, against the real broker and
//! MongoDB-protocol server: `/metrics` counts a create-fire-result cycle
//! exactly, and an OTLP receiver started here receives the spans of create,
//! fire, publish and result in one trace.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{
    EventReader, RawProducer, create_job, create_request, metric_value, processes::ServiceProcess,
    scrape_metrics, scrape_when, spawn_app, test_vars, wait_for_status,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use scheduler_service::{config::vars, grpc::proto, telemetry::metrics};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status};

const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn metrics_count_a_create_fire_result_cycle() {
    let mut app = spawn_app(&[]).await;
    let topics = app.settings.topics.clone();
    let runs = EventReader::new(&topics.job_run.name);
    let producer = RawProducer::new();

    let mut ids = Vec::new();
    for name in ["succeeds", "fails"] {
        ids.push(create_job(&mut app.client, create_request(name, 300)).await);
    }
    let refused = app
        .client
        .get_job(proto::GetJobRequest {
            id: "not-an-id".to_owned(),
        })
        .await
        .expect_err("a bad id is refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let both: Vec<&str> = ids.iter().map(String::as_str).collect();
    let unfired = runs.missing_of(&both, EVENT_TIMEOUT).await;
    assert!(unfired.is_empty(), "{unfired:?} not fired");
    let results = &topics.job_run_result;
    producer.send(results, "x", b"not json").await;
    for (id, status) in ids.iter().zip([4, 5]) {
        let payload = format!(r#"{{"Id":"{id}","Status":{status}}}"#);
        producer.send(results, id, payload.as_bytes()).await;
    }
    for (id, status) in ids
        .iter()
        .zip([proto::JobStatus::Succeeded, proto::JobStatus::Failed])
    {
        assert_eq!(
            wait_for_status(&mut app.client, id, status, EVENT_TIMEOUT).await,
            status
        );
    }

    let consumed = (metrics::RESULTS_CONSUMED, &[][..]);
    let text = scrape_when(app.metrics_port, consumed, 2.0, EVENT_TIMEOUT).await;
    let value = |name: &str, labels: &[(&str, &str)]| metric_value(&text, name, labels);
    assert_eq!(value(metrics::JOBS_CREATED, &[]), 2.0, "{text}");
    assert_eq!(value(metrics::JOBS_FIRED, &[]), 2.0);
    assert_eq!(value(metrics::JOBS_SUCCEEDED, &[]), 1.0);
    assert_eq!(value(metrics::JOBS_FAILED, &[("reason", "result")]), 1.0);
    assert_eq!(
        value(&format!("{}_count", metrics::FIRE_LATENESS), &[]),
        2.0
    );
    assert_eq!(value(metrics::ARMED_TIMERS, &[]), 0.0);
    let create_ok = [("method", "CreateJob"), ("code", "OK")];
    assert_eq!(value(metrics::RPC_REQUESTS, &create_ok), 2.0);
    assert_eq!(
        value(&format!("{}_count", metrics::RPC_DURATION), &create_ok),
        2.0
    );
    assert_eq!(
        value(
            metrics::RPC_REQUESTS,
            &[("method", "GetJob"), ("code", "INVALID_ARGUMENT")]
        ),
        1.0
    );
    for (topic, published) in [
        (&topics.job_create.name, 2.0),
        (&topics.job_run.name, 2.0),
        (&topics.job_update.name, 0.0),
    ] {
        assert_eq!(
            value(metrics::EVENTS_PUBLISHED, &[("topic", topic)]),
            published,
            "{topic}"
        );
        assert_eq!(value(metrics::EVENTS_FAILED, &[("topic", topic)]), 0.0);
    }
    assert_eq!(value(metrics::RESULTS_CONSUMED, &[]), 2.0);
    assert_eq!(
        value(metrics::RESULTS_SKIPPED, &[("reason", "malformed")]),
        1.0
    );
    assert!(
        value("process_resident_memory_bytes", &[]) > 0.0,
        "process metrics"
    );

    // The lag comes from the consumer's statistics (every 5 s): once they
    // report, nothing is left to read.
    let lag_labels = [("topic", results.as_str()), ("partition", "0")];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let text = scrape_metrics(app.metrics_port).await;
        if text.contains(&format!("{}{{", metrics::CONSUMER_LAG)) {
            assert_eq!(metric_value(&text, metrics::CONSUMER_LAG, &lag_labels), 0.0);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no consumer lag reported:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    app.stop().await;
}

/// One received span, flattened.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    service_name: String,
}

/// An OTLP/gRPC trace collector that keeps every span it receives.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.spans.lock().expect("collector lock");
        for resource_spans in request.into_inner().resource_spans {
            let service_name = resource_spans
                .resource
                .iter()
                .flat_map(|resource| &resource.attributes)
                .find(|attribute| attribute.key == "service.name")
                .and_then(|attribute| attribute.value.as_ref())
                .map(|value| format!("{:?}", value.value))
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    spans.push(ReceivedSpan {
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        name: span.name,
                        service_name: service_name.clone(),
                    });
                }
            }
        }
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// The service's warnings and errors, for failure messages (its shutdown
/// reports there whether the last export went out).
fn service_log(dir: &std::path::Path) -> String {
    match std::fs::read_to_string(dir.join("service.log")) {
        Ok(text) => {
            let lines: Vec<&str> = text
                .lines()
                .filter(|line| line.contains("WARN") || line.contains("ERROR"))
                .collect();
            format!("service log warnings and errors:\n{}", lines.join("\n"))
        }
        Err(err) => format!("(no service log: {err})"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn one_job_life_is_one_trace_from_create_to_result() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the collector");
    let collector_port = listener.local_addr().expect("address").port();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );

    let endpoint = format!("http://127.0.0.1:{collector_port}");
    let mut env = test_vars(&[
        (vars::OTEL_EXPORTER_OTLP_ENDPOINT, endpoint.as_str()),
        (vars::OTEL_SERVICE_NAME, "scheduler-under-test"),
    ]);
    // No scheduled export during the test (one an hour): every span stays
    // buffered until the graceful stop, so what the collector holds once the
    // service has exited is what its shutdown exported, and a lost final
    // export shows as missing spans on every run, not on an unlucky one.
    env.push(("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "3600000".to_owned()));
    let topics: HashMap<&str, String> = [
        vars::TOPIC_JOB_CREATE,
        vars::TOPIC_JOB_RUN,
        vars::TOPIC_JOB_RUN_RESULT,
    ]
    .into_iter()
    .map(|name| (name, common::var_of(&env, name).to_owned()))
    .collect();
    let logs = tempfile::tempdir().expect("log dir");
    let mut service = ServiceProcess::start(&env, logs.path()).await;
    let mut client = service.client().await;
    let creates = EventReader::new(&topics[vars::TOPIC_JOB_CREATE]);
    let runs = EventReader::new(&topics[vars::TOPIC_JOB_RUN]);

    // The caller's own trace: the service must continue it.
    let trace_id = common::unique() + "00000000"; // 24 + 8 = 32 hex digits
    let caller_span = "00f067aa0ba902b7";
    let mut request = Request::new(create_request("traced", 500));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{caller_span}-01")
            .parse()
            .expect("ASCII metadata"),
    );
    let id = create_job(&mut client, request).await;
    // A caller over HTTP: its trace continues the same way.
    let http_trace = common::unique() + "11111111";
    let http_caller = "00f067aa0ba902b8";
    let created = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/jobs", service.http_port))
        .header("traceparent", format!("00-{http_trace}-{http_caller}-01"))
        .json(&serde_json::json!({
            "name": "traced over HTTP", "job_type": "email", "job_data": "{}",
            "schedule_time": (chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339(),
        }))
        .send()
        .await
        .expect("an answer");
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);

    let (created, _) = creates.next_for(&id, EVENT_TIMEOUT).await;
    let created = created.expect("create event");
    assert!(
        created.headers["traceparent"].contains(&trace_id),
        "create event headers: {:?}",
        created.headers
    );
    let (run, _) = runs.next_for(&id, EVENT_TIMEOUT).await;
    let run = run.expect("run event");
    let run_traceparent = run.headers["traceparent"].clone();
    assert!(
        run_traceparent.contains(&trace_id),
        "run event headers: {:?}",
        run.headers
    );
    // The executor copies the run event's trace context onto its result.
    RawProducer::new()
        .send_with_headers(
            &topics[vars::TOPIC_JOB_RUN_RESULT],
            &id,
            format!(r#"{{"Id":"{id}","Status":4}}"#).as_bytes(),
            &[("traceparent", &run_traceparent)],
        )
        .await;
    assert_eq!(
        wait_for_status(&mut client, &id, proto::JobStatus::Succeeded, EVENT_TIMEOUT).await,
        proto::JobStatus::Succeeded
    );
    // A graceful stop exports what is still buffered. The collector is
    // served by this (current-thread) runtime, and the service's last
    // export waits for its answer before the service exits: terminate
    // waits beside the runtime, not on it (and bounds a hang: SIGKILL after
    // 60 s).
    let status = service.terminate().await;
    let log = service_log(logs.path());
    assert!(status.success(), "service stopped cleanly: {status}\n{log}");

    let expected = [
        "proto.JobsService/CreateJob".to_owned(),
        "db insert".to_owned(),
        format!("{} publish", topics[vars::TOPIC_JOB_CREATE]),
        "fire job".to_owned(),
        format!("{} publish", topics[vars::TOPIC_JOB_RUN]),
        format!("{} process", topics[vars::TOPIC_JOB_RUN_RESULT]),
        "db store_result".to_owned(),
    ];
    // The service has exited, so its shutdown export was answered (or given
    // up): the collector holds now everything it will ever get.
    let in_trace: Vec<ReceivedSpan> = collector
        .spans
        .lock()
        .expect("collector lock")
        .iter()
        .filter(|span| span.trace_id == trace_id)
        .cloned()
        .collect();
    let names: Vec<&str> = in_trace.iter().map(|span| span.name.as_str()).collect();
    for name in &expected {
        assert!(
            names.contains(&name.as_str()),
            "span {name:?} missing from trace {trace_id}: {names:?}\n{log}"
        );
    }
    let rpc = in_trace
        .iter()
        .find(|span| span.name == "proto.JobsService/CreateJob")
        .expect("rpc span");
    assert_eq!(
        rpc.parent_span_id, caller_span,
        "the RPC span continues the caller's span"
    );
    assert!(
        in_trace
            .iter()
            .all(|span| span.service_name.contains("scheduler-under-test")),
        "service name: {in_trace:?}"
    );
    // Every span but the RPC's has its parent inside the trace.
    let ids: Vec<&str> = in_trace.iter().map(|span| span.span_id.as_str()).collect();
    for span in in_trace.iter().filter(|span| span.name != rpc.name) {
        assert!(
            ids.contains(&span.parent_span_id.as_str()),
            "{span:?} hangs off a span not in the trace"
        );
    }
    let http_spans: Vec<ReceivedSpan> = collector
        .spans
        .lock()
        .expect("collector lock")
        .iter()
        .filter(|span| span.trace_id == http_trace)
        .cloned()
        .collect();
    let http_span = http_spans
        .iter()
        .find(|span| span.name == "POST /v1/jobs")
        .unwrap_or_else(|| panic!("no HTTP span in {http_spans:?}"));
    assert_eq!(http_span.parent_span_id, http_caller);
    assert!(
        http_spans.iter().any(|span| span.name == "db insert"),
        "the creation's store call joins the HTTP caller's trace: {http_spans:?}"
    );
    server.abort();
}
