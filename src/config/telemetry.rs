//! Telemetry: the port of the Prometheus endpoint `/metrics`, and where and
//! under which service name the traces are exported over OTLP.

use serde::Deserialize;

use super::{ConfigError, value, vars};

/// The Prometheus endpoint and the OpenTelemetry trace export.
#[derive(Debug, Clone)]
pub struct ObservabilitySettings {
    /// Bind port of `/metrics` (on the gRPC server's host); 0 picks a free one.
    pub metrics_port: u16,
    /// OTLP/gRPC endpoint the spans go to; `None`: not exported.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

impl Default for ObservabilitySettings {
    fn default() -> Self {
        ObservabilitySettings {
            metrics_port: 9464,
            otlp_endpoint: None,
            service_name: "scheduler-service".to_owned(),
        }
    }
}

/// The telemetry variables.
#[derive(Deserialize)]
#[serde(default)]
pub(super) struct TelemetryVars {
    #[serde(deserialize_with = "value::whole")]
    metrics_port: u16,
    otel_exporter_otlp_endpoint: Option<String>,
    otel_service_name: String,
}

impl Default for TelemetryVars {
    fn default() -> Self {
        let defaults = ObservabilitySettings::default();
        TelemetryVars {
            metrics_port: defaults.metrics_port,
            otel_exporter_otlp_endpoint: defaults.otlp_endpoint,
            otel_service_name: defaults.service_name,
        }
    }
}

impl TelemetryVars {
    /// The telemetry settings, with an `http://` or `https://` collector.
    pub(super) fn into_settings(self) -> Result<ObservabilitySettings, ConfigError> {
        let otlp_endpoint = self
            .otel_exporter_otlp_endpoint
            .map(|endpoint| match endpoint.parse::<tonic::transport::Uri>() {
                Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) => Ok(endpoint),
                _ => Err(ConfigError::new(
                    vars::OTEL_EXPORTER_OTLP_ENDPOINT,
                    format!("expected an http:// or https:// URL, got {endpoint:?}"),
                )),
            })
            .transpose()?;
        Ok(ObservabilitySettings {
            metrics_port: self.metrics_port,
            otlp_endpoint,
            service_name: self.otel_service_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::settings;
    use super::*;

    #[test]
    fn observability_settings_parse_and_a_bad_endpoint_names_the_variable() {
        let defaults = settings(&[]).unwrap().observability;
        assert_eq!(defaults.metrics_port, 9464);
        assert_eq!(defaults.otlp_endpoint, None);
        assert_eq!(defaults.service_name, "scheduler-service");
        let s = settings(&[
            (vars::METRICS_PORT, "0"),
            (vars::OTEL_EXPORTER_OTLP_ENDPOINT, "http://jaeger:4317"),
            (vars::OTEL_SERVICE_NAME, "scheduler-eu"),
        ])
        .unwrap()
        .observability;
        assert_eq!(s.metrics_port, 0);
        assert_eq!(s.otlp_endpoint.as_deref(), Some("http://jaeger:4317"));
        assert_eq!(s.service_name, "scheduler-eu");
        for (name, value) in [
            (vars::OTEL_EXPORTER_OTLP_ENDPOINT, "jaeger:4317"),
            (vars::OTEL_EXPORTER_OTLP_ENDPOINT, "ftp://jaeger:4317"),
            (vars::OTEL_EXPORTER_OTLP_ENDPOINT, "http://"),
            (vars::METRICS_PORT, "70000"),
        ] {
            let err = settings(&[(name, value)]).unwrap_err();
            assert_eq!(err.name, name, "{value}: {err}");
        }
    }
}
