//! schedctl, the command-line client, run as a child process against the
//! real service (the harness's: MongoDB-protocol store and Kafka-protocol
//! broker): its output in both formats and its exit codes.
//!
//! Timeouts here only bound a hang; no test asserts how long anything took.

mod common;

use std::{process::Stdio, time::Duration};

use common::{TestApp, TestAuth, spawn_app, spawn_app_with_auth};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStderr, ChildStdout, Command},
};

/// Bounds a wait that should end; reaching it fails the test.
const HANG: Duration = Duration::from_secs(60);

/// A schedctl run: its exit code and what it printed.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Its standard output as JSON objects, one per line.
    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
            .collect()
    }

    /// Its standard output as exactly one JSON object.
    fn json(&self) -> Value {
        let mut lines = self.json_lines();
        assert_eq!(lines.len(), 1, "one object: {self:?}");
        lines.remove(0)
    }

    /// Asserts that it succeeded; returns it.
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "schedctl failed: {self:?}");
        self
    }
}

/// schedctl with `args`, and no address or token from the environment.
fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_schedctl"));
    command
        .args(args)
        .env_remove("SCHEDCTL_ADDR")
        .env_remove("SCHEDCTL_TOKEN")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs `command` to its end.
async fn finish(mut command: Command) -> Run {
    let output = tokio::time::timeout(HANG, command.output())
        .await
        .expect("schedctl ends")
        .expect("schedctl runs");
    Run {
        code: output.status.code().expect("an exit code, not a signal"),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 output"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 errors"),
    }
}

/// Runs schedctl with `args` (table times in UTC) to its end.
async fn schedctl_at(addr: &str, args: &[&str]) -> Run {
    finish(command(&[&["--addr", addr, "--utc"], args].concat())).await
}

/// The address of `app`.
fn addr(app: &TestApp) -> String {
    format!("http://127.0.0.1:{}", app.port)
}

/// Runs schedctl with `args` against `app`.
async fn schedctl(app: &TestApp, args: &[&str]) -> Run {
    schedctl_at(&addr(app), args).await
}

/// A time `in_secs` seconds from now, RFC 3339 to the second, in UTC.
fn time_in(in_secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(in_secs))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Creates a one-shot email job due at `at`; returns its id.
async fn create(app: &TestApp, name: &str, at: &str) -> String {
    let run = schedctl(
        app,
        &[
            "create",
            "--name",
            name,
            "--at",
            at,
            "--data",
            r#"{"Subject":"s"}"#,
            "-o",
            "json",
        ],
    )
    .await
    .ok();
    let id = run.json()["id"].as_str().expect("an id").to_owned();
    assert_eq!(id.len(), 24, "an ObjectId: {id}");
    id
}

/// Job `id` as `get -o json` shows it.
async fn get(app: &TestApp, id: &str) -> Value {
    schedctl(app, &["get", id, "-o", "json"]).await.ok().json()
}

/// Polls `get` until `done` holds for the job (within [`HANG`]).
async fn wait_for_job(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let job = get(app, id).await;
        if done(&job) {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job never got there: {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts that `run` failed with `code`, printing one `error: <name>:` line.
fn assert_error(run: &Run, code: i32, name: &str) {
    assert_eq!(run.code, code, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "one line: {run:?}");
    assert!(
        run.stderr.starts_with(&format!("error: {name}: ")),
        "{run:?}"
    );
    assert!(run.stdout.is_empty(), "{run:?}");
}

#[tokio::test]
async fn a_job_is_created_shown_listed_updated_and_deleted() {
    let app = spawn_app(&[]).await;
    let at = time_in(3600);
    let id = create(&app, "welcome mail", &at).await;

    let job = get(&app, &id).await;
    assert_eq!(job["id"], id.as_str());
    assert_eq!(job["name"], "welcome mail");
    assert_eq!(job["status"], "scheduled");
    assert_eq!(job["job_type"], "email");
    assert_eq!(job["schedule_time"], at.as_str());
    assert_eq!(job["job_data"], r#"{"Subject":"s"}"#);
    assert!(job.get("recurrence").is_none(), "one-shot: {job}");

    let table = schedctl(&app, &["get", &id]).await.ok().stdout;
    let row = |key: &str| {
        table
            .lines()
            .find(|line| line.split_whitespace().next() == Some(key))
            .map(|line| line[key.len()..].trim().to_owned())
    };
    assert_eq!(row("id").as_deref(), Some(id.as_str()), "{table}");
    assert_eq!(row("status").as_deref(), Some("scheduled"), "{table}");
    assert_eq!(
        row("schedule_time").as_deref(),
        Some(at.as_str()),
        "{table}"
    );

    let listed = schedctl(&app, &["list", "-o", "json"]).await.ok();
    let ids: Vec<Value> = listed
        .json_lines()
        .iter()
        .map(|job| job["id"].clone())
        .collect();
    assert_eq!(ids, [Value::from(id.as_str())]);
    let table = schedctl(&app, &["list"]).await.ok().stdout;
    assert!(
        table
            .lines()
            .next()
            .is_some_and(|header| header.starts_with("ID")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|line| line.starts_with(&id) && line.contains("welcome mail")),
        "{table}"
    );

    let later = time_in(7200);
    let updated = schedctl(
        &app,
        &[
            "update",
            &id,
            "--name",
            "welcome sms",
            "--type",
            "sms",
            "--at",
            &later,
            "--data",
            "{}",
            "-o",
            "json",
        ],
    )
    .await
    .ok();
    assert_eq!(updated.json(), serde_json::json!({ "updated": id }));
    let job = get(&app, &id).await;
    assert_eq!(
        (&job["name"], &job["job_type"]),
        (&"welcome sms".into(), &"sms".into())
    );
    assert_eq!(job["schedule_time"], later.as_str());

    let deleted = schedctl(&app, &["delete", &id, "-o", "json"]).await.ok();
    assert_eq!(deleted.json(), serde_json::json!({ "deleted": id }));
    let gone = schedctl(&app, &["get", &id]).await;
    assert_error(&gone, 4, "NOT_FOUND");
    assert!(gone.stderr.contains(&id), "{gone:?}");
    app.stop().await;
}

#[tokio::test]
async fn json_times_are_utc_whatever_the_zone_and_tables_show_the_zone() {
    let app = spawn_app(&[]).await;
    let at = time_in(3600);
    let id = create(&app, "zoned", &at).await;
    // A zone 5 h 30 min east of UTC, as a POSIX rule (no tz database needed),
    // and no --utc.
    let in_zone = |args: &[&str]| {
        let addr = addr(&app);
        let mut command = command(&[&["--addr", addr.as_str()], args].concat());
        command.env("TZ", "IST-5:30");
        finish(command)
    };
    let job = in_zone(&["get", &id, "-o", "json"]).await.ok().json();
    assert_eq!(job["schedule_time"], at.as_str());
    let ist = chrono::FixedOffset::east_opt(5 * 3600 + 30 * 60).expect("an offset");
    let local = chrono::DateTime::parse_from_rfc3339(&at)
        .expect("RFC 3339")
        .with_timezone(&ist);
    let table = in_zone(&["get", &id]).await.ok().stdout;
    let row = format!(
        "schedule_time  {}",
        local.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    assert!(table.lines().any(|line| line == row), "{row}: {table}");
    let listed = in_zone(&["list"]).await.ok().stdout;
    let short = local.format("%Y-%m-%d %H:%M:%S").to_string();
    assert!(
        listed
            .lines()
            .any(|line| line.starts_with(&id) && line.ends_with(&short)),
        "{short}: {listed}"
    );
    app.stop().await;
}

#[tokio::test]
async fn tables_fit_in_80_columns_and_cut_long_cells_with_an_ellipsis() {
    let app = spawn_app(&[]).await;
    let long_name = "a name far too long for any table column, ".repeat(4);
    let id = create(&app, long_name.trim(), &time_in(3600)).await;
    for args in [vec!["get", id.as_str()], vec!["list"]] {
        let table = schedctl(&app, &args).await.ok().stdout;
        for line in table.lines() {
            assert!(
                line.chars().count() <= 80,
                "{} columns: {line}",
                line.chars().count()
            );
        }
        assert!(table.contains('…'), "the name is cut: {table}");
        assert!(table.contains(&id), "the id is whole: {table}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_recurring_job_is_paused_resumed_triggered_and_previewed() {
    let app = spawn_app(&[]).await;
    let created = schedctl(
        &app,
        &[
            "create",
            "--name",
            "new year",
            "--data",
            "{}",
            "--cron",
            "0 0 1 1 *",
            "--catch-up",
            "skip",
            "-o",
            "json",
        ],
    )
    .await
    .ok();
    let id = created.json()["id"].as_str().expect("an id").to_owned();
    let job = get(&app, &id).await;
    assert_eq!(job["recurrence"]["cron_expression"], "0 0 1 1 *");
    assert_eq!(job["recurrence"]["catch_up"], "skip");
    assert!(
        job["next_occurrence"]
            .as_str()
            .is_some_and(|t| t.ends_with("-01-01T00:00:00Z")),
        "{job}"
    );

    let paused = schedctl(&app, &["pause", &id, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(paused["paused"], true);
    let resumed = schedctl(&app, &["resume", &id, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(resumed["paused"], false);

    let preview = schedctl(&app, &["preview", &id, "--count", "2", "-o", "json"])
        .await
        .ok();
    let occurrences = preview.json_lines();
    assert_eq!(occurrences.len(), 2, "{preview:?}");
    for occurrence in &occurrences {
        let time = occurrence["time"].as_str().expect("a time");
        assert!(time.ends_with("-01-01T00:00:00Z"), "{time}");
    }

    schedctl(&app, &["trigger", &id, "-o", "json"]).await.ok();
    let runs = wait_for_runs(&app, &id, |runs| {
        runs.iter().any(|run| run["cause"] == "manual")
    })
    .await;
    assert_eq!(runs[0]["attempt"], 1, "{runs:?}");
    app.stop().await;
}

/// Polls `runs -o json` until `done` holds for the job's runs.
async fn wait_for_runs(app: &TestApp, id: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let runs = schedctl(app, &["runs", id, "-o", "json"])
            .await
            .ok()
            .json_lines();
        if done(&runs) {
            return runs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "runs never got there: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ids `schedctl list` prints (JSON) with these filter flags.
async fn listed_ids(app: &TestApp, filters: &[&str]) -> Vec<String> {
    let mut args = vec!["list", "-o", "json"];
    args.extend_from_slice(filters);
    let listed = schedctl(app, &args).await.ok();
    let mut ids: Vec<String> = listed
        .json_lines()
        .iter()
        .map(|job| job["id"].as_str().expect("an id").to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn list_filters_by_status_type_kind_name_and_paused() {
    let app = spawn_app(&[]).await;
    let later = create(&app, "Weekly report", &time_in(3600)).await;
    let recurring = schedctl(
        &app,
        &[
            "create",
            "--name",
            "nightly",
            "--data",
            "{}",
            "--cron",
            "0 3 * * *",
            "-o",
            "json",
        ],
    )
    .await
    .ok();
    let recurring = recurring.json()["id"].as_str().expect("an id").to_owned();
    assert_eq!(
        listed_ids(&app, &["--kind", "recurring"]).await,
        std::slice::from_ref(&recurring)
    );
    assert_eq!(
        listed_ids(&app, &["--kind", "once", "--type", "email"]).await,
        std::slice::from_ref(&later)
    );
    assert_eq!(
        listed_ids(&app, &["--name", "REPORT"]).await,
        std::slice::from_ref(&later)
    );
    assert_eq!(
        listed_ids(&app, &["--status", "failed"]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        listed_ids(&app, &["--type", "sms"]).await,
        Vec::<String>::new()
    );
    let mut both = vec![later.clone(), recurring.clone()];
    both.sort();
    assert_eq!(listed_ids(&app, &["--status", "scheduled"]).await, both);
    assert_eq!(listed_ids(&app, &["--paused", "false"]).await, both);
    assert_eq!(
        listed_ids(&app, &["--paused", "true"]).await,
        Vec::<String>::new()
    );
    schedctl(&app, &["pause", &recurring]).await.ok();
    assert_eq!(
        listed_ids(&app, &["--paused", "true"]).await,
        std::slice::from_ref(&recurring)
    );
    assert_eq!(
        listed_ids(&app, &["--paused", "false", "--name", "report"]).await,
        std::slice::from_ref(&later)
    );
    let bad = schedctl(&app, &["list", "--kind", "weekly"]).await;
    assert_eq!(bad.code, 2, "clap refuses an unknown kind: {}", bad.stderr);
    let bad = schedctl(&app, &["list", "--paused", "maybe"]).await;
    assert_eq!(
        bad.code, 2,
        "clap refuses a paused that is not a boolean: {}",
        bad.stderr
    );
    app.stop().await;
}

#[tokio::test]
async fn a_cron_expression_is_previewed_before_it_is_saved() {
    let app = spawn_app(&[]).await;
    let args = [
        "preview",
        "--cron",
        "30 1 * * *",
        "--time-zone",
        "UTC",
        "--count",
        "3",
    ];
    let run = schedctl(&app, &[&args[..], &["-o", "json"]].concat())
        .await
        .ok();
    let occurrences = run.json_lines();
    assert_eq!(occurrences.len(), 3, "{run:?}");
    for occurrence in &occurrences {
        let time = occurrence["time"].as_str().expect("a time");
        assert!(time.ends_with("T01:30:00Z"), "{time}");
        assert_eq!(occurrence["kind"], "regular");
    }
    let table = schedctl(&app, &args).await.ok().stdout;
    assert_eq!(
        table
            .lines()
            .filter(|line| line.contains("T01:30:00Z"))
            .count(),
        3,
        "{table}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_result_is_reported_listed_in_the_runs_and_the_job_rerun() {
    let app = spawn_app(&[]).await;
    let id = create(&app, "due now", &time_in(-1)).await;
    wait_for_job(&app, &id, |job| job["status"] == "running").await;
    let runs = wait_for_runs(&app, &id, |runs| !runs.is_empty()).await;
    let token = runs[0]["fire_token"]
        .as_i64()
        .expect("a fire token")
        .to_string();
    assert_eq!(runs[0]["outcome"], "running");

    let reported = schedctl(
        &app,
        &[
            "report",
            &id,
            "--status",
            "failed",
            "--scheduled-key",
            &token,
            "--error",
            "SMTP 451",
            "--executor",
            "tester",
            "--final",
            "-o",
            "json",
        ],
    )
    .await
    .ok();
    assert_eq!(
        reported.json(),
        serde_json::json!({ "id": id, "outcome": "stored" })
    );
    let job = get(&app, &id).await;
    assert_eq!(
        (&job["status"], &job["last_error"]),
        (&"failed".into(), &"SMTP 451".into())
    );
    let runs = schedctl(&app, &["runs", &id, "-o", "json"])
        .await
        .ok()
        .json_lines();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["outcome"], "failed");
    assert_eq!(
        (&runs[0]["error"], &runs[0]["executor"]),
        (&"SMTP 451".into(), &"tester".into())
    );
    let table = schedctl(&app, &["runs", &id]).await.ok().stdout;
    assert!(
        table
            .lines()
            .any(|line| line.starts_with(&token) && line.contains("failed")),
        "{table}"
    );

    let rerun = schedctl(&app, &["rerun", &id, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(rerun["id"], id.as_str());
    assert_ne!(rerun["status"], "failed", "{rerun}");
    wait_for_runs(&app, &id, |runs| runs.len() == 2).await;
    app.stop().await;
}

#[tokio::test]
async fn invalid_input_names_the_field_and_bad_usage_is_clap_s() {
    let app = spawn_app(&[]).await;
    let bad_cron = schedctl(
        &app,
        &[
            "create",
            "--name",
            "x",
            "--data",
            "{}",
            "--cron",
            "not a cron",
        ],
    )
    .await;
    assert_error(&bad_cron, 3, "INVALID_ARGUMENT");
    assert!(
        bad_cron
            .stderr
            .trim_end()
            .ends_with("(field: cron_expression)"),
        "{bad_cron:?}"
    );
    let no_name = schedctl(&app, &["create", "--at", &time_in(60), "--data", "{}"]).await;
    assert_error(&no_name, 3, "INVALID_ARGUMENT");
    assert!(
        no_name.stderr.trim_end().ends_with("(field: name)"),
        "{no_name:?}"
    );
    let bad_page = schedctl(&app, &["list", "--page", "0"]).await;
    assert_error(&bad_page, 3, "INVALID_ARGUMENT");
    assert!(
        bad_page.stderr.trim_end().ends_with("(field: page)"),
        "{bad_page:?}"
    );
    let usage = schedctl(&app, &["create", "--at", "tomorrow"]).await;
    assert_eq!(usage.code, 2, "{usage:?}");
    assert!(usage.stderr.contains("--at"), "{usage:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_bad_token_is_refused_when_auth_is_on() {
    let auth = TestAuth::new();
    let app = spawn_app_with_auth(&auth, &[]).await;
    let forged = schedctl(&app, &["--token", "not.a.token", "list"]).await;
    assert_error(&forged, 6, "UNAUTHENTICATED");
    let none = schedctl(&app, &["list"]).await;
    assert_error(&none, 6, "UNAUTHENTICATED");
    let executor = auth.token("executor");
    let denied = schedctl(&app, &["--token", &executor, "list"]).await;
    assert_error(&denied, 6, "PERMISSION_DENIED");

    // A good token, from the environment.
    let mut listed = command(&["--addr", &addr(&app), "list", "-o", "json"]);
    listed.env("SCHEDCTL_TOKEN", auth.token("admin"));
    let output = tokio::time::timeout(HANG, listed.output())
        .await
        .expect("ends")
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    app.stop().await;
}

#[tokio::test]
async fn an_unreachable_address_is_exit_code_7() {
    let port = test_support::free_port().expect("a free port");
    let run = schedctl_at(&format!("http://127.0.0.1:{port}"), &["list"]).await;
    assert_error(&run, 7, "UNAVAILABLE");
    assert!(run.stderr.contains("cannot connect"), "{run:?}");
}

/// The next line of a child's output (within [`HANG`]); none at its end.
async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(lines: &mut Lines<R>) -> Option<String> {
    tokio::time::timeout(HANG, lines.next_line())
        .await
        .expect("a line within the bound")
        .expect("readable output")
}

/// `watch` as a child process, its output read line by line.
fn spawn_watch(
    app: &TestApp,
    args: &[&str],
) -> (
    Child,
    Lines<BufReader<ChildStdout>>,
    Lines<BufReader<ChildStderr>>,
) {
    let addr = addr(app);
    let all = [&["--addr", addr.as_str(), "watch"], args].concat();
    let mut child = command(&all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("schedctl starts");
    let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    (child, stdout, stderr)
}

#[tokio::test]
async fn watch_prints_a_create_event_as_json() {
    let app = spawn_app(&[]).await;
    let (mut child, mut stdout, mut stderr) =
        spawn_watch(&app, &["--kind", "create", "-o", "json"]);
    // It says on stderr once it is subscribed: events from then on reach it.
    let notice = next_line(&mut stderr).await.expect("a notice");
    assert!(notice.contains("watching"), "{notice}");
    let id = create(&app, "watched", &time_in(3600)).await;
    let event = loop {
        let line = next_line(&mut stdout).await.expect("an event line");
        let event: Value = serde_json::from_str(&line).expect("a JSON object");
        assert_eq!(event["kind"], "create", "only create events: {line}");
        if event["job"]["id"] == id.as_str() {
            break event;
        }
    };
    assert_eq!(event["job"]["name"], "watched");
    assert!(event["scheduled_key"].is_i64(), "{event}");
    // The HTTP API's form leaves out what is not set: no subscription, no
    // sequence.
    assert!(event.get("sequence").is_none(), "{event}");
    child.kill().await.expect("killed");
    app.stop().await;
}

#[tokio::test]
async fn watch_stops_after_its_limit_with_table_lines() {
    let app = spawn_app(&[]).await;
    let (mut child, mut stdout, mut stderr) = spawn_watch(&app, &["--limit", "1"]);
    next_line(&mut stderr).await.expect("a notice");
    let header = next_line(&mut stdout).await.expect("a header");
    assert!(header.starts_with("KIND"), "{header}");
    let id = create(&app, "watched once", &time_in(3600)).await;
    let line = next_line(&mut stdout).await.expect("an event line");
    assert!(line.starts_with("create") && line.contains(&id), "{line}");
    let status = tokio::time::timeout(HANG, child.wait())
        .await
        .expect("it stops")
        .expect("status");
    assert!(status.success(), "{status:?}");
    app.stop().await;
}

#[tokio::test]
async fn completions_help_and_exit_codes_need_no_service() {
    let bash = schedctl_at("http://127.0.0.1:1", &["completions", "bash"])
        .await
        .ok();
    assert!(bash.stdout.contains("schedctl"), "{bash:?}");
    assert!(bash.stdout.lines().count() > 10, "{bash:?}");
    let help = schedctl_at("http://127.0.0.1:1", &["--help"]).await.ok();
    for text in [
        "Exit codes:",
        "4  not found",
        "7  unavailable",
        "watch",
        "completions",
        "JSON times are always UTC",
    ] {
        assert!(help.stdout.contains(text), "{text}: {help:?}");
    }
}

/// The service on the embedded store serving TLS only, with a certificate
/// for `localhost` signed by a CA made at test time (no key is committed).
struct TlsService {
    /// The CA's certificate, PEM: what `--ca-file` takes.
    ca_file: String,
    port: u16,
    shutdown: tokio_util::sync::CancellationToken,
    server: tokio::task::JoinHandle<Result<(), scheduler_service::startup::StartupError>>,
    _dir: tempfile::TempDir,
}

impl TlsService {
    async fn start() -> TlsService {
        use scheduler_service::config::{Settings, vars};
        let dir = tempfile::tempdir().expect("temp dir");
        let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        for (name, pem) in certificate_files() {
            std::fs::write(path(name), pem).expect("PEM file");
        }
        let env = [
            (vars::DATA_DIR, path("data")),
            (vars::SERVER_HOST, "127.0.0.1".to_owned()),
            (vars::SERVER_PORT, "0".to_owned()),
            (vars::METRICS_PORT, "0".to_owned()),
            (vars::SHUTDOWN_GRACE_SECS, "2".to_owned()),
            (vars::GRPC_TLS_CERT_FILE, path("cert.pem")),
            (vars::GRPC_TLS_KEY_FILE, path("key.pem")),
        ];
        let lookup = |name: &str| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
        let settings = Settings::from_lookup(lookup).expect("settings");
        let app = scheduler_service::startup::Application::build(settings)
            .await
            .expect("the service builds");
        TlsService {
            ca_file: path("ca.pem"),
            port: app.port(),
            shutdown: app.shutdown_token(),
            server: tokio::spawn(app.run_until_stopped()),
            _dir: dir,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let stopped = self.server.await.expect("the service's task");
        stopped.expect("stops cleanly");
    }
}

/// A CA's certificate and a server certificate and key for `localhost`
/// that it signed, as (file name, PEM).
fn certificate_files() -> [(&'static str, String); 3] {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["localhost".to_owned()]).expect("parameters");
    let cert = params.signed_by(&key, &ca).expect("signed");
    [
        ("ca.pem", ca.pem()),
        ("cert.pem", cert.pem()),
        ("key.pem", key.serialize_pem()),
    ]
}

#[tokio::test]
async fn https_trusts_the_ca_file_and_no_other() {
    let service = TlsService::start().await;
    let addr = format!("https://localhost:{}", service.port);
    let trusted = ["--ca-file", service.ca_file.as_str()];
    let created = schedctl_at(
        &addr,
        &[
            &trusted[..],
            &[
                "create",
                "--name",
                "over TLS",
                "--at",
                &time_in(3600),
                "--data",
                "{}",
            ],
        ]
        .concat(),
    )
    .await;
    let created = created.ok();
    let id = created.stdout.trim();
    let listed = schedctl_at(&addr, &[&trusted[..], &["list", "-o", "json"]].concat())
        .await
        .ok();
    assert_eq!(listed.json()["id"], id, "{listed:?}");
    // Mozilla's roots do not include the test CA.
    let untrusted = schedctl_at(&addr, &["list"]).await;
    assert_error(&untrusted, 7, "UNAVAILABLE");
    assert!(untrusted.stderr.contains("cannot connect"), "{untrusted:?}");
    service.stop().await;
}
