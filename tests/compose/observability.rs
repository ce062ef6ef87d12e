//! How the observability stack is wired in the override: Prometheus,
//! Grafana and Jaeger are development tools defined there only, Prometheus
//! scrapes the scheduler's `/metrics`, the scheduler sends its spans to
//! Jaeger over OTLP/gRPC, and Grafana reads both and opens on the
//! scheduler's dashboard.

use std::collections::BTreeMap;

use scheduler_service::config::vars;
use serde_yaml::Value;

use crate::{
    compose_files::{
        BASE, OVERRIDE, environment, port_pairs, resolved_config, services, url_parts,
    },
    grafana, prometheus,
};

/// The compose services of the observability stack (override only).
pub const PROMETHEUS: &str = "prometheus";
pub const GRAFANA: &str = "grafana";
pub const JAEGER: &str = "jaeger";

#[test]
fn prometheus_scrapes_the_scheduler_and_jaeger_receives_its_spans() {
    let base = services(&resolved_config(&[BASE]));
    let full = resolved_config(&[BASE, OVERRIDE]);
    let s = services(&full);
    assert_dev_tools_are_in_the_override_only(&base, &s);
    prometheus::assert_scrapes_the_scheduler(&full, &s);
    assert_spans_go_to_jaeger(&s);
    grafana::assert_reads_prometheus_and_jaeger(&s);
    grafana::assert_opens_on_a_loaded_dashboard(&s);
}

/// Development tools: in the override only, each with a healthcheck.
fn assert_dev_tools_are_in_the_override_only(
    base: &BTreeMap<String, Value>,
    s: &BTreeMap<String, Value>,
) {
    for tool in [PROMETHEUS, GRAFANA, JAEGER] {
        assert!(s.contains_key(tool), "{OVERRIDE} defines no {tool}");
        assert!(!base.contains_key(tool), "{tool} belongs in {OVERRIDE}");
        assert!(
            s[tool].get("healthcheck").is_some(),
            "{tool} has no healthcheck"
        );
        assert_eq!(s[tool]["restart"].as_str(), Some("unless-stopped"));
    }
    // Without the override there is no Jaeger to export to.
    assert!(
        !environment(&base["scheduler-service"]).contains_key(vars::OTEL_EXPORTER_OTLP_ENDPOINT),
        "{BASE} points the scheduler at an OTLP collector that only {OVERRIDE} defines"
    );
}

/// Spans go over OTLP/gRPC to the port Jaeger receives them on.
fn assert_spans_go_to_jaeger(s: &BTreeMap<String, Value>) {
    let env = |name: &str| environment(&s[name]);
    let scheduler = env("scheduler-service");
    let endpoint = &scheduler[vars::OTEL_EXPORTER_OTLP_ENDPOINT];
    let (scheme, host, port) = url_parts(endpoint);
    assert_eq!(scheme, "http", "{endpoint}: Jaeger's receiver is plaintext");
    assert_eq!(host, JAEGER, "{endpoint} is not the Jaeger service");
    let jaeger = env(JAEGER);
    assert_eq!(
        jaeger.get("COLLECTOR_OTLP_ENABLED").map(String::as_str),
        Some("true")
    );
    let otlp_grpc: u16 = jaeger
        .get("COLLECTOR_OTLP_GRPC_HOST_PORT")
        .map_or("4317", |hp| hp.rsplit(':').next().unwrap_or_default())
        .parse()
        .expect("COLLECTOR_OTLP_GRPC_HOST_PORT ends in a port");
    assert_eq!(
        port, otlp_grpc,
        "{endpoint}: Jaeger takes OTLP/gRPC on {otlp_grpc}"
    );
    let jaeger_ports = port_pairs(&s[JAEGER]);
    assert!(
        jaeger_ports.contains(&(4317, otlp_grpc)),
        "a scheduler on the host cannot send spans to 127.0.0.1:4317: {jaeger_ports:?}"
    );
    assert!(
        jaeger_ports.contains(&(16686, 16686)),
        "Jaeger's UI is not on the host's port 16686: {jaeger_ports:?}"
    );
    // The scheduler starts after Jaeger but does not wait for its health: a
    // tracing backend must never keep the scheduler down.
    assert_eq!(
        s["scheduler-service"]["depends_on"][JAEGER]["condition"].as_str(),
        Some("service_started")
    );
    for dependency in ["scheduler-db-service", "kafka1"] {
        assert_eq!(
            s["scheduler-service"]["depends_on"][dependency]["condition"].as_str(),
            Some("service_healthy"),
            "the override dropped the scheduler's dependency on {dependency}"
        );
    }
}
