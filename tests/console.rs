//! The web console in a real browser: headless Chromium (Debian's
//! `chromium` and `chromium-driver`, installed by `scripts/services.sh`)
//! driven over WebDriver, against the service on PostgreSQL and the
//! Kafka-protocol broker. An operator signs in, creates jobs through the
//! form, reads a refused action's message, watches a job fire on the live
//! feed and finds its run in the history; previews, pauses, resumes and
//! deletes a recurring job; a viewer sees but cannot act; the pages fit a
//! phone's width.
//!
//! The service runs on a manual clock, so a job fires exactly when the
//! test moves the clock (after the feed is connected), never by a race
//! with the wall clock. Each page's screenshot is saved under
//! `target/tmp/console-screenshots/` (the README shows two of them).

mod common;

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use chrono::{SecondsFormat, TimeDelta};
use common::{TestApp, TestAuth, spawn_app_with_on_clock, test_settings};
use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use scheduler_service::{
    clock::{Clock, ManualClock},
    config::vars,
};
use serde_json::{Value, json};
use test_support::child::{ChildProcess, free_port};

/// Longest wait for anything that must happen: a bound on a hang only.
const HANG: Duration = Duration::from_secs(60);

/// Whether every control of the page has a label (or an ARIA label) and
/// every button a name.
const ALL_LABELLED: &str = "return [...document.querySelectorAll('input, select, textarea')]\
    .every(el => el.labels.length > 0 || el.getAttribute('aria-label')) && \
    [...document.querySelectorAll('button')].every(b => b.textContent.trim() !== '');";

/// Whether the form shows the fields of the schedule kind `arguments[0]`
/// and hides the others.
const SHOWN_KIND: &str = "return [...document.querySelectorAll('[data-kind]')].every(el => \
    (el.offsetParent !== null) === (el.dataset.kind === arguments[0]));";

/// Where the screenshots go.
fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
}

/// Headless Chromium behind its WebDriver server, killed when dropped.
struct Browser {
    client: Client,
    driver: ChildProcess,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// Kills chromedriver's process group, the browser with it: a test
    /// that fails before closing its session leaves nothing running.
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let killed = Command::new("kill").args(["-KILL", "--", &group]).status();
        if let Err(err) = killed {
            eprintln!("cannot kill the browser's process group: {err}");
        }
    }
}

impl Browser {
    /// Starts chromedriver and a browser session with the flags that keep
    /// Chromium off the network, in UTC (the viewer's zone in the tests).
    async fn start() -> Browser {
        let port = free_port().expect("a free port");
        let profile = tempfile::tempdir().expect("profile dir");
        let driver = ChildProcess::spawn(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                // Its own process group, which the browser joins.
                .process_group(0)
                .env("TZ", "UTC")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        )
        .expect("chromedriver runs (scripts/services.sh installs chromium-driver)");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,1400",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), json!({ "args": args }));
        let url = format!("http://127.0.0.1:{port}");
        let started = tokio::time::Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(err) if started.elapsed() < HANG => {
                    tracing::debug!(error = %err, "chromedriver not ready");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => panic!("no browser session: {err}"),
            }
        };
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Opens the console of `app` at `fragment` (`#/jobs`, ...).
    async fn open(&self, app: &TestApp, fragment: &str) {
        let url = format!("http://127.0.0.1:{}/{fragment}", app.http_port);
        self.client.goto(&url).await.expect("page opens");
    }

    /// Saves a screenshot of the page as `<name>.png`.
    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::create_dir_all(screenshots()).expect("screenshot dir");
        std::fs::write(screenshots().join(format!("{name}.png")), png).expect("screenshot saved");
    }

    /// The first element `css` selects, once there is one.
    async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(HANG)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|err| panic!("no {css}: {err}"))
    }

    /// Waits until the script `condition` (a function body) returns true;
    /// `what` says what was awaited when it never does.
    async fn until(&self, what: &str, condition: &str, args: Vec<Value>) {
        let started = tokio::time::Instant::now();
        loop {
            let answer = self.client.execute(condition, args.clone()).await;
            if matches!(answer, Ok(Value::Bool(true))) {
                return;
            }
            assert!(started.elapsed() < HANG, "never: {what} ({answer:?})");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the text of the element `css` contains `needle`.
    async fn until_text(&self, css: &str, needle: &str) {
        let script = "const el = document.querySelector(arguments[0]); \
                      return !!el && el.textContent.includes(arguments[1]);";
        let what = format!("{css} shows {needle:?}");
        self.until(&what, script, vec![json!(css), json!(needle)])
            .await;
    }

    /// Waits until the live feed has an entry about `name` marked `class`
    /// (`k-run`, `k-result-ok`, ...).
    async fn until_feed_shows(&self, name: &str, class: &str) {
        let script = "return [...document.querySelectorAll('#feed li')].some(li => \
                      li.textContent.includes(arguments[0]) && li.querySelector('.' + arguments[1]));";
        let what = format!("the feed shows {class} of {name}");
        self.until(&what, script, vec![json!(name), json!(class)])
            .await;
    }

    /// The text of the whole page.
    async fn page_text(&self) -> String {
        let text = self
            .client
            .execute("return document.body.innerText;", vec![])
            .await;
        text.ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Types `text` into the field `css` (cleared first).
    async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("field clears");
        field.send_keys(text).await.expect("typed");
    }

    /// Sets a control's value by script (a date input, a select) and
    /// announces the change as a user's would.
    async fn set(&self, css: &str, value: &str) {
        let script = "const el = document.querySelector(arguments[0]); el.value = arguments[1]; \
                      el.dispatchEvent(new Event('input', {bubbles: true})); \
                      el.dispatchEvent(new Event('change', {bubbles: true}));";
        self.client
            .execute(script, vec![json!(css), json!(value)])
            .await
            .expect("value set");
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("clicked");
    }

    /// Clicks the button whose text is `label`, then Confirm in the dialog.
    async fn confirm(&self, label: &str) {
        let button = format!("//div[@role='group']//button[normalize-space()='{label}']");
        let found = self
            .client
            .wait()
            .at_most(HANG)
            .for_element(Locator::XPath(&button));
        found
            .await
            .expect("action button")
            .click()
            .await
            .expect("clicked");
        self.until(
            "the confirmation dialog opens",
            "return document.getElementById('confirm').open;",
            vec![],
        )
        .await;
        self.click("#confirm-ok").await;
    }
}

/// The service on PostgreSQL and Kafka with auth on, on a manual clock.
async fn console_app(auth: &TestAuth, clock: &ManualClock) -> TestApp {
    let key_file = auth.public_key_file();
    let settings = test_settings(&[
        (vars::DATABASE_URI, &common::postgres_uri()),
        (vars::AUTH_PUBLIC_KEY_FILE, &key_file),
    ]);
    spawn_app_with_on_clock(settings, clock).await
}

/// Calls the HTTP API as `token`'s holder.
async fn api(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let url = format!("http://127.0.0.1:{}{path}", app.http_port);
    let mut request = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the API answers");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.expect("JSON")
}

/// The id of the one job named `name`.
async fn job_named(app: &TestApp, token: &str, name: &str) -> Value {
    let path = format!("/v1/jobs?name_contains={}", name.replace(' ', "%20"));
    let page = api(app, token, reqwest::Method::GET, &path, None).await;
    let jobs = page["jobs"].as_array().expect("jobs").clone();
    assert_eq!(jobs.len(), 1, "{page}");
    jobs[0].clone()
}

/// An operator at work: the service on a manual clock, with auth on, and
/// a browser signed in with an admin token.
struct Operator {
    auth: TestAuth,
    clock: ManualClock,
    app: TestApp,
    admin: String,
    browser: Browser,
}

impl Operator {
    async fn signed_in() -> Operator {
        let auth = TestAuth::new();
        let clock = ManualClock::at_wall_time();
        let app = console_app(&auth, &clock).await;
        let admin = auth.token("admin");
        let browser = Browser::start().await;
        sign_in(&browser, &app, &admin).await;
        Operator {
            auth,
            clock,
            app,
            admin,
            browser,
        }
    }
}

/// Ends the browser session and stops the service.
async fn finish(browser: Browser, app: TestApp) {
    browser.client.clone().close().await.expect("session ends");
    app.stop().await;
}

async fn sign_in(browser: &Browser, app: &TestApp, token: &str) {
    browser.open(app, "#/").await;
    browser.find("#token").await;
    browser.shot("sign-in").await;
    browser.fill("#token", token).await;
    browser.click("form button[type=submit]").await;
    browser.until_text("#who", "tester").await;
}

#[tokio::test]
async fn an_operator_creates_a_job_watches_it_fire_and_finds_its_run() {
    let Operator {
        auth,
        clock,
        app,
        admin,
        browser,
    } = Operator::signed_in().await;

    // Create through the form, due in ten minutes of the service's clock.
    browser.open(&app, "#/new").await;
    browser.find("#name").await;
    browser
        .until("every control is labelled", ALL_LABELLED, vec![])
        .await;
    browser.fill("#name", "browser email").await;
    browser.fill("#job_data", r#"{"Subject": "hello"}"#).await;
    let due = clock.now() + TimeDelta::minutes(10);
    browser
        .set(
            "#schedule_time",
            &due.format("%Y-%m-%dT%H:%M:%S").to_string(),
        )
        .await;
    browser.until_text("#preview", "Fires once").await;
    browser.shot("create").await;
    browser.click("form button[type=submit]").await;
    browser.until_text("h1", "browser email").await;
    let job = job_named(&app, &admin, "browser email").await;
    assert_eq!(
        job["schedule_time"],
        json!(due.to_rfc3339_opts(SecondsFormat::Secs, true))
    );
    let id = job["id"].as_str().expect("id").to_owned();

    // A refused action: it has not run, so it cannot be rerun; the page
    // shows the service's own words.
    browser.confirm("Rerun").await;
    browser.until_text("#flash", "Rerun refused").await;
    browser
        .until_text("#flash", "only a SUCCEEDED or FAILED job can be rerun")
        .await;
    browser.shot("refused").await;

    // The live feed is connected; the clock moves; the run arrives on it.
    browser.open(&app, "#/live").await;
    browser.until_text(".live-state", "Live").await;
    browser
        .until(
            "the refusal stays on its page",
            "return document.getElementById('flash').hidden;",
            vec![],
        )
        .await;
    clock.advance(TimeDelta::minutes(11));
    browser.until_text("#feed", "browser email").await;
    browser.until_feed_shows("browser email", "k-run").await;

    // An executor reports: the feed shows the result, and the job page
    // the run in its history.
    let result = json!({"status": "succeeded", "executor": "browser-test"});
    api(
        &app,
        &auth.token("executor"),
        reqwest::Method::POST,
        &format!("/v1/jobs/{id}/result"),
        Some(result),
    )
    .await;
    browser
        .until_feed_shows("browser email", "k-result-ok")
        .await;
    browser.shot("live").await;
    browser.open(&app, &format!("#/jobs/{id}")).await;
    browser.until_text("#runs", "browser-test").await;
    browser.until_text("#runs", "succeeded").await;
    browser.shot("job").await;

    // The overview counts it and charts its firing.
    browser.open(&app, "#/").await;
    browser.until("the firing chart has a bar", "return [...document.querySelectorAll('svg.chart rect.bar:not(.bad)')].some(r => Number(r.getAttribute('height')) > 0);", vec![]).await;
    let card = "return [...document.querySelectorAll('.card')].some(card => \
                card.querySelector('.what').textContent === arguments[0] && \
                card.querySelector('.n').textContent === arguments[1]);";
    browser
        .until(
            "one succeeded job is counted",
            card,
            vec![json!("succeeded"), json!("1")],
        )
        .await;
    browser
        .until(
            "no job is counted running",
            card,
            vec![json!("running"), json!("0")],
        )
        .await;
    browser.shot("overview").await;

    finish(browser, app).await;
}

#[tokio::test]
async fn an_operator_previews_pauses_resumes_and_deletes_a_recurring_job() {
    let Operator {
        app,
        admin,
        browser,
        ..
    } = Operator::signed_in().await;

    // A cron job: the form previews its occurrences as it is typed, and
    // shows the service's refusal of a bad expression beside the field.
    browser.open(&app, "#/new").await;
    browser.fill("#name", "nightly report").await;
    browser.fill("#job_data", "{}").await;
    browser
        .until("only the once fields show", SHOWN_KIND, vec![json!("once")])
        .await;
    browser.click("#kind-cron").await;
    browser
        .until("only the cron fields show", SHOWN_KIND, vec![json!("cron")])
        .await;
    browser.fill("#cron_expression", "0 3 * * 99").await;
    browser.until_text("#cron_expression-error", "cron").await;
    browser.fill("#cron_expression", "0 3 * * *").await;
    browser.set("#time_zone", "Europe/Paris").await;
    browser.until_text("#preview-words", "At 03:00").await;
    browser
        .until(
            "five occurrences are previewed",
            "return document.querySelectorAll('#preview tbody tr').length === 5;",
            vec![],
        )
        .await;
    browser.click("form button[type=submit]").await;
    browser.until_text("#schedule-words", "Europe/Paris").await;
    browser.until("ten occurrences in both zones", "return document.querySelectorAll('#occurrences tbody tr').length === 10 && document.querySelector('#occurrences thead').textContent.includes('Europe/Paris');", vec![]).await;
    let job = job_named(&app, &admin, "nightly report").await;
    let id = job["id"].as_str().expect("id").to_owned();

    // Pause, confirmed: the page and the service both say paused.
    browser.confirm("Pause").await;
    browser.until_text("h1", "paused").await;
    assert_eq!(
        job_named(&app, &admin, "nightly report").await["paused"],
        json!(true)
    );
    browser.shot("job-paused").await;

    // The jobs list filters on it.
    browser.open(&app, "#/jobs?paused=false").await;
    browser.until_text("main", "No job matches.").await;
    browser.open(&app, "#/jobs?paused=true").await;
    browser.until_text("table", "nightly report").await;
    browser.shot("jobs").await;

    // Resume, confirmed.
    browser.open(&app, &format!("#/jobs/{id}")).await;
    browser.confirm("Resume").await;
    browser
        .until(
            "the paused badge is gone",
            "return !document.querySelector('h1 .paused') && !!document.querySelector('h1');",
            vec![],
        )
        .await;
    assert_eq!(
        job_named(&app, &admin, "nightly report").await["paused"],
        json!(false)
    );

    // Delete, confirmed: back to the list, and the job is gone.
    browser.confirm("Delete").await;
    browser
        .until(
            "the jobs list is shown",
            "return location.hash.startsWith('#/jobs') && !location.hash.includes(arguments[0]);",
            vec![json!(id)],
        )
        .await;
    let gone = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/v1/jobs/{id}", app.http_port))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("the API answers");
    assert_eq!(gone.status(), reqwest::StatusCode::NOT_FOUND);

    finish(browser, app).await;
}

#[tokio::test]
async fn a_viewer_sees_but_cannot_act_and_pages_fit_a_phone() {
    let auth = TestAuth::new();
    let clock = ManualClock::at_wall_time();
    let app = console_app(&auth, &clock).await;
    let admin = auth.token("admin");
    let due = (clock.now() + TimeDelta::hours(1)).to_rfc3339();
    let body =
        json!({"name": "watched job", "job_type": "sms", "job_data": "{}", "schedule_time": due});
    let created = api(&app, &admin, reqwest::Method::POST, "/v1/jobs", Some(body)).await;
    let id = created["id"].as_str().expect("id").to_owned();

    let browser = Browser::start().await;
    browser.open(&app, "#/").await;
    browser.fill("#token", &auth.token("viewer")).await;
    browser.click("form button[type=submit]").await;
    browser.until_text("#who", "read-only").await;
    browser.open(&app, &format!("#/jobs/{id}")).await;
    browser.until_text("h1", "watched job").await;
    browser.until_text("#runs-h", "Runs").await;
    let text = browser.page_text().await;
    for action in ["Edit", "Pause", "Trigger now", "Rerun", "Delete"] {
        assert!(
            !text.lines().any(|line| line.trim() == action),
            "{action} offered to a viewer: {text}"
        );
    }
    browser
        .until(
            "New job is hidden",
            "return document.querySelector('[data-admin]').hidden;",
            vec![],
        )
        .await;

    // A phone's width: every page fits without scrolling sideways (wide
    // tables scroll inside their own box).
    browser
        .client
        .set_window_size(390, 844)
        .await
        .expect("resized");
    for page in ["#/", "#/jobs", &format!("#/jobs/{id}"), "#/live"] {
        browser.open(&app, page).await;
        browser.find("main h1").await;
        browser
            .until(&format!("{page} labels its controls"), ALL_LABELLED, vec![])
            .await;
        browser
            .until(
                &format!("{page} fits the width"),
                "return document.documentElement.scrollWidth <= window.innerWidth;",
                vec![],
            )
            .await;
    }
    browser.open(&app, "#/jobs").await;
    browser.until_text("table", "watched job").await;
    browser.shot("phone-jobs").await;

    finish(browser, app).await;
}
