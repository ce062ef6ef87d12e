//! Grafana: the datasources and dashboards it is provisioned with (read
//! from what `grafana-service/Dockerfile` copies into the image), that it
//! reads Prometheus and Jaeger through the compose network and opens on a
//! dashboard it loads, and that the dashboards are well formed and show
//! every metric the service exports, each as its type wants.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    time::Duration,
};

use scheduler_service::telemetry::metrics::{self, FailReason, Metrics, SubscriberDrop};
use serde_yaml::Value;

use crate::{
    compose_files::{environment, files_in, port_pairs, read, scalar, url_parts},
    dockerfile::copied_to,
    observability::{GRAFANA, JAEGER, PROMETHEUS},
    prometheus::prometheus_config,
    promql::{Query, Selector, label_values},
};

/// The uid of Grafana's "Mixed" datasource: each query names its own.
const MIXED: &str = "-- Mixed --";

/// Where `grafana-service/Dockerfile` puts the provisioning (the image's
/// default path).
const GRAFANA_PROVISIONING: &str = "/etc/grafana/provisioning";

/// A datasource Grafana is provisioned with.
#[derive(Debug, Clone)]
pub struct Datasource {
    /// Its plugin: `prometheus`, `jaeger`.
    pub kind: String,
    pub url: String,
    /// Whether a query that names no datasource goes to this one.
    pub is_default: bool,
}

/// Grafana's provisioned datasources (`provisioning/datasources/*.yml`), by
/// uid; at most one is the default.
pub fn grafana_datasources() -> BTreeMap<String, Datasource> {
    let provisioning = copied_to("grafana-service", GRAFANA_PROVISIONING);
    let files = files_in(&provisioning.join("datasources"), &["yml", "yaml"]);
    assert!(!files.is_empty(), "Grafana provisions no datasource");
    let mut out = BTreeMap::new();
    for file in files {
        let doc: Value = serde_yaml::from_str(&read(&file))
            .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", file.display()));
        let list = doc["datasources"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{}: no datasources list", file.display()));
        for ds in list {
            let field = |key: &str| -> String {
                ds.get(key)
                    .map(scalar)
                    .unwrap_or_else(|| panic!("{}: a datasource has no {key}", file.display()))
            };
            let uid = field("uid");
            assert!(!uid.is_empty(), "{}: empty datasource uid", file.display());
            let datasource = Datasource {
                kind: field("type"),
                url: field("url"),
                is_default: ds
                    .get("isDefault")
                    .is_some_and(|d| d.as_bool() == Some(true)),
            };
            let previous = out.insert(uid.clone(), datasource);
            assert!(
                previous.is_none(),
                "datasource uid {uid} is provisioned twice"
            );
        }
    }
    let defaults = out.values().filter(|d| d.is_default).count();
    assert!(defaults <= 1, "{defaults} datasources are the default");
    out
}

/// The folder the dashboard provider loads, as the image path and as the
/// repository folder copied there.
pub fn grafana_dashboard_folder() -> (String, PathBuf) {
    let provisioning = copied_to("grafana-service", GRAFANA_PROVISIONING);
    let files = files_in(&provisioning.join("dashboards"), &["yml", "yaml"]);
    assert_eq!(files.len(), 1, "expected one dashboard provider file");
    let doc: Value = serde_yaml::from_str(&read(&files[0]))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", files[0].display()));
    let providers = doc["providers"].as_sequence().expect("a providers list");
    assert_eq!(providers.len(), 1, "expected one dashboard provider");
    let provider = &providers[0];
    assert_eq!(provider["type"].as_str(), Some("file"));
    let path = scalar(&provider["options"]["path"]);
    let folder = copied_to("grafana-service", &path);
    assert!(folder.is_dir(), "{} is not a folder", folder.display());
    (path, folder)
}

/// The dashboards Grafana loads: file name → JSON.
pub fn grafana_dashboards() -> BTreeMap<String, serde_json::Value> {
    let (_, folder) = grafana_dashboard_folder();
    let files = files_in(&folder, &["json"]);
    assert!(!files.is_empty(), "{}: no dashboard JSON", folder.display());
    files
        .into_iter()
        .map(|file| {
            let json = serde_json::from_str(&read(&file))
                .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", file.display()));
            let name = file
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            (name, json)
        })
        .collect()
}

/// Every panel of a dashboard, those inside rows included.
pub fn panels(dashboard: &serde_json::Value) -> Vec<&serde_json::Value> {
    fn walk<'a>(list: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
        for panel in list.as_array().map(Vec::as_slice).unwrap_or_default() {
            out.push(panel);
            if let Some(nested) = panel.get("panels") {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Grafana reads both through the compose network, on the ports the
/// servers listen on there.
pub fn assert_reads_prometheus_and_jaeger(s: &BTreeMap<String, Value>) {
    let datasources = grafana_datasources();
    let by_type = |kind: &str| -> (String, String) {
        let found: Vec<_> = datasources
            .iter()
            .filter(|(_, d)| d.kind == kind)
            .map(|(uid, d)| (uid.clone(), d.url.clone()))
            .collect();
        assert_eq!(found.len(), 1, "expected one {kind} datasource: {found:?}");
        found[0].clone()
    };
    for (kind, service, port) in [("prometheus", PROMETHEUS, 9090), ("jaeger", JAEGER, 16686)] {
        let (uid, url) = by_type(kind);
        let (scheme, host, url_port) = url_parts(&url);
        assert_eq!(
            (scheme.as_str(), host.as_str(), url_port),
            ("http", service, port),
            "datasource {uid}: {url}"
        );
        assert!(
            port_pairs(&s[service])
                .iter()
                .any(|(_, target)| *target == port),
            "{service} does not publish its port {port}"
        );
        assert_eq!(
            s[GRAFANA]["depends_on"][service]["condition"].as_str(),
            Some("service_healthy"),
            "grafana must wait until {service} is healthy"
        );
    }
    assert!(
        port_pairs(&s[GRAFANA]).contains(&(3000, 3000)),
        "Grafana is not on the host's port 3000"
    );
}

/// The home dashboard is one the provider loads.
pub fn assert_opens_on_a_loaded_dashboard(s: &BTreeMap<String, Value>) {
    let env = |name: &str| environment(&s[name]);
    let (path, folder) = grafana_dashboard_folder();
    let home = env(GRAFANA)
        .get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
        .cloned()
        .expect("Grafana opens on the scheduler's dashboard");
    let file = home
        .strip_prefix(&format!("{path}/"))
        .unwrap_or_else(|| panic!("home dashboard {home} is not under {path}"));
    assert!(
        folder.join(file).is_file(),
        "home dashboard {home}: {} does not exist",
        folder.join(file).display()
    );
    assert!(grafana_dashboards().contains_key(file));
}

/// What the service exports: the names it declares, and the `# TYPE` of
/// every metric it renders once each labelled family has been used (the
/// prometheus crate leaves a labelled family out of the text until a label
/// set is used), the process collector's included.
struct Exported {
    names: BTreeSet<&'static str>,
    types: BTreeMap<String, String>,
}

impl Exported {
    /// A fresh `Metrics` with each labelled family used once. Every name of
    /// `NAMES` must then render a type: a new labelled family that this
    /// does not use yet fails here, instead of going unchecked.
    fn new() -> Exported {
        let m = Metrics::new();
        m.rpc_handled("CreateJob", tonic::Code::Ok, Duration::from_millis(1));
        m.http_handled("/v1/jobs", "POST", 201, Duration::from_millis(1));
        m.job_failed(FailReason::Result);
        m.event_published("topic-job-run");
        m.event_failed("topic-job-run");
        m.result_skipped("malformed");
        m.result_dead_lettered("malformed");
        m.store_failed("insert", "unavailable");
        m.set_consumer_lag("topic-job-run-result", 0, 1);
        m.subscriber_dropped(SubscriberDrop::Stalled);
        let types: BTreeMap<String, String> = m
            .render(0)
            .lines()
            .filter_map(|line| {
                let (name, kind) = line.strip_prefix("# TYPE ")?.split_once(' ')?;
                Some((name.to_owned(), kind.trim().to_owned()))
            })
            .collect();
        let names: BTreeSet<&'static str> = metrics::NAMES.iter().copied().collect();
        assert!(!names.is_empty());
        for name in &names {
            assert!(
                types.contains_key(*name),
                "{name} renders no # TYPE: use its family in Exported::new"
            );
        }
        Exported { names, types }
    }
}

#[test]
fn the_dashboard_shows_every_metric_the_service_exports() {
    let datasources = grafana_datasources();
    let (jobs, _) = prometheus_config();
    let exported = Exported::new();

    let dashboards = grafana_dashboards();
    let mut shown = BTreeSet::new();
    for (file, dashboard) in &dashboards {
        assert!(
            dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()),
            "{file}: no uid"
        );
        let mut ids = BTreeSet::new();
        let all = panels(dashboard);
        assert!(!all.is_empty(), "{file}: no panels");
        for panel in all {
            let title = panel["title"].as_str().unwrap_or_default();
            for target in &panel_targets(file, panel, &mut ids, &datasources) {
                let expr = target["expr"].as_str().unwrap_or_default();
                let panel = Panel { file, title, expr };
                shown.extend(panel.check_query(&jobs, &exported));
            }
        }
    }
    let missing: Vec<&str> = exported
        .names
        .iter()
        .copied()
        .filter(|name| !shown.contains(*name))
        .collect();
    assert!(missing.is_empty(), "no panel shows {missing:?}");
}

/// Checks a panel's id, place and datasources; returns its queries (none
/// for a row), each of which goes to a Prometheus datasource.
fn panel_targets(
    file: &str,
    panel: &serde_json::Value,
    ids: &mut BTreeSet<u64>,
    datasources: &BTreeMap<String, Datasource>,
) -> Vec<serde_json::Value> {
    let title = panel["title"].as_str().unwrap_or_default();
    let id = panel["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("{file}: {title}: no id"));
    assert!(ids.insert(id), "{file}: panel id {id} twice");
    let grid = &panel["gridPos"];
    let (x, w) = (grid["x"].as_u64(), grid["w"].as_u64());
    assert!(
        matches!((x, w), (Some(x), Some(w)) if w > 0 && x + w <= 24),
        "{file}: {title}: gridPos {grid} is outside the 24 columns"
    );
    if panel["type"] == "row" {
        return Vec::new();
    }
    let targets = panel["targets"].as_array().cloned().unwrap_or_default();
    assert!(!targets.is_empty(), "{file}: {title}: no query");
    let named = |source: &serde_json::Value| -> Option<(String, Datasource)> {
        if source.is_null() {
            return None;
        }
        let uid = source["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: {title}: datasource {source} has no uid"));
        if uid == MIXED {
            return None;
        }
        let datasource = datasources.get(uid).unwrap_or_else(|| {
            panic!("{file}: {title}: datasource uid {uid:?} is not provisioned")
        });
        assert_eq!(
            source["type"].as_str(),
            Some(datasource.kind.as_str()),
            "{file}: {title}: datasource {uid} is a {}",
            datasource.kind
        );
        Some((uid.to_owned(), datasource.clone()))
    };
    let panel_source = named(&panel["datasource"]);
    for target in &targets {
        // Where Grafana sends the query: its own datasource, else the
        // panel's, else the default one.
        let (uid, datasource) = named(&target["datasource"])
            .or_else(|| panel_source.clone())
            .or_else(|| {
                datasources
                    .iter()
                    .find(|(_, d)| d.is_default)
                    .map(|(uid, d)| (uid.clone(), d.clone()))
            })
            .unwrap_or_else(|| {
                panic!("{file}: {title}: a query names no datasource and none is the default")
            });
        assert_eq!(
            datasource.kind, "prometheus",
            "{file}: {title}: the query {target} goes to {uid}, a {} datasource: \
             this check reads PromQL queries only",
            datasource.kind
        );
    }
    targets
}

/// One query of a panel, named in failures by its dashboard and title.
struct Panel<'a> {
    file: &'a str,
    title: &'a str,
    expr: &'a str,
}

impl Panel<'_> {
    /// Checks the jobs and metrics the query selects; returns the exported
    /// metrics it shows.
    fn check_query(&self, jobs: &[String], exported: &Exported) -> Vec<String> {
        let Panel { file, title, expr } = self;
        assert!(!expr.trim().is_empty(), "{file}: {title}: empty query");
        for job in label_values(expr, "job") {
            assert!(
                jobs.contains(&job),
                "{file}: {title}: job {job:?} is not scraped by prometheus.yml"
            );
        }
        let query = Query::parse(expr);
        assert!(
            !query.selectors.is_empty(),
            "{file}: {title}: {expr} selects no metric"
        );
        query
            .selectors
            .iter()
            .filter_map(|selector| self.check_metric(&query, selector, exported))
            .collect()
    }

    /// Checks that the query selects a metric the service renders, as its
    /// type wants; returns the metric of `NAMES` it shows, if any (none for
    /// a process metric).
    fn check_metric(
        &self,
        query: &Query,
        selector: &Selector,
        exported: &Exported,
    ) -> Option<String> {
        let Panel { file, title, .. } = self;
        let name = selector.name.as_str();
        if let Some(kind) = exported.types.get(name) {
            assert_ne!(
                kind, "histogram",
                "{file}: {title}: {name} is a histogram: select _bucket, _sum or _count"
            );
            return exported.names.contains(name).then(|| name.to_owned());
        }
        // A histogram's series: NAME_bucket, NAME_sum, NAME_count.
        let (base, kind) = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                Some((base, exported.types.get(base)?))
            })
            .unwrap_or_else(|| {
                panic!(
                    "{file}: {title}: the service exports no metric {name} \
                     (scheduler_service::telemetry::metrics::NAMES, the process \
                     collector's, or a histogram's _bucket, _sum, _count)"
                )
            });
        assert_eq!(
            kind, "histogram",
            "{file}: {title}: {name}: {base} is a {kind}, not a histogram"
        );
        if name.ends_with("_bucket") {
            assert!(
                query.quantile_keeps_le(selector),
                "{file}: {title}: {name} is not inside histogram_quantile, or an \
                 aggregation between them drops le"
            );
        }
        exported.names.contains(base).then(|| base.to_owned())
    }
}
