//! Builds the whole service from its settings: used by `main` and by the
//! integration tests alike, so that tests run exactly what ships. The one
//! place that knows every layer: it opens the store and the broker, makes
//! the service, starts its background duties and serves gRPC
//! ([`grpc_server`]) until shutdown.

mod grpc_server;
mod sockets;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    net::TcpListener,
    sync::mpsc::UnboundedReceiver,
    task::{JoinError, JoinHandle},
};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use self::sockets::Sockets;
use crate::{
    backoff::Backoff,
    broker::{
        BrokerError, JobsProducer,
        durable::{Subscriptions, run_retention},
        hub::{EventHub, FanOutProducer, HUB_CAPACITY},
        kafka::{KafkaJobsProducer, ensure_topics},
    },
    clock::{Clock, SystemClock},
    config::{
        DatabaseKind, DatabaseSettings, KafkaSettings, SecuritySettings, Settings, TopicSettings,
        redact_uri,
    },
    consumer::result_consumers,
    duties::Duties,
    grpc::{JobEventsGrpc, JobsGrpc},
    http::{Api, HttpServer},
    service::{JobService, ShardKeeper},
    store::{
        JobDB, StoreError,
        embedded::EmbeddedJobDB,
        event_log::EventLog,
        mongo::MongoJobDB,
        postgres::{self, PgJobDB},
        traced::TracedJobDB,
    },
    telemetry::metrics::Metrics,
    timer::{Firing, Timer},
};

/// Why the service could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The job store could not be set up.
    #[error("job store: {0}")]
    Store(#[from] StoreError),
    /// The broker client could not be set up.
    #[error("message broker: {0}")]
    Broker(#[from] BrokerError),
    /// A listening socket (gRPC, HTTP or metrics) could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Server(String),
    /// A background duty stopped before shutdown, so the service stopped.
    #[error("background duty {0:?} stopped before shutdown")]
    DutyStopped(&'static str),
}

/// A built service, listening, with its background tasks running.
pub struct Application {
    listener: TcpListener,
    port: u16,
    /// The HTTP API's socket, until it serves.
    http: Option<HttpServer>,
    http_port: u16,
    metrics_port: u16,
    service: JobService,
    producer: Arc<dyn JobsProducer>,
    hub: EventHub,
    /// Named subscriptions, when the store keeps an event log.
    subscriptions: Option<Subscriptions>,
    shutdown: CancellationToken,
    firings: TaskTracker,
    duties: Duties,
    /// Start-up work that finishes by itself (creating topics the broker
    /// was not ready for), awaited at shutdown.
    helpers: Vec<JoinHandle<()>>,
    grace: Duration,
    security: SecuritySettings,
}

impl Application {
    /// Connects to the store and broker, creates indexes and topics, arms the
    /// jobs due within the look-ahead window, starts the timer and consumers,
    /// and binds the gRPC port. Unreachable servers do not stop start-up:
    /// calls fail with UNAVAILABLE until they are back.
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        Application::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// As [`Application::build`], on `clock` (tests and simulations drive a
    /// [`crate::clock::ManualClock`]).
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Application, StartupError> {
        let shutdown = CancellationToken::new();
        log_start(&settings);
        let metrics = Metrics::new();
        let (db, log) = open_store(&settings.database, &metrics).await?;
        let mut helpers = Vec::new();
        let hub = EventHub::new(HUB_CAPACITY);
        let kafka = open_kafka(&settings, &metrics, &shutdown, &mut helpers).await?;
        let producer = fan_out(kafka, &hub, log.as_ref());
        let (timer, firing_rx) = Timer::start_with(clock, shutdown.clone());
        let service = JobService::new(
            db,
            producer.clone(),
            timer,
            settings.scheduler.clone(),
            metrics.clone(),
        );
        service.notify_results_to(hub.clone());
        let sockets = Sockets::bind(&settings).await?;
        let sharing = share_shards(&service, &settings, sockets.port).await?;
        arm_window(&service).await;
        let firings = TaskTracker::new();
        let mut duties = start_duties(&service, firing_rx, &firings, &settings, &shutdown)?;
        if let Some(keeper) = sharing {
            let leases = service.clone().run_shard_leases(keeper, shutdown.clone());
            duties.spawn("shard leases", leases);
        }
        let subscriptions = log.map(|log| {
            let log: Arc<dyn EventLog> = Arc::new(log);
            subscriptions(log, &settings, &hub, &service, &shutdown, &mut duties)
        });
        let metrics_port = sockets.metrics.port();
        let timer = service.timer().clone();
        duties.spawn(
            "metrics endpoint",
            sockets
                .metrics
                .serve(metrics, move || timer.len(), shutdown.clone()),
        );
        tracing::info!(port = metrics_port, "metrics served at /metrics");
        let (listener, port, http) = (sockets.grpc, sockets.port, sockets.http);
        Ok(Application {
            listener,
            port,
            http_port: http.port(),
            http: Some(http),
            metrics_port,
            service,
            producer,
            hub,
            subscriptions,
            shutdown,
            firings,
            duties,
            helpers,
            grace: settings.shutdown_grace,
            security: settings.security,
        })
    }

    /// The port the gRPC server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the HTTP/JSON API.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The port of the Prometheus endpoint `/metrics`.
    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
    }

    /// The service behind the gRPC layer.
    pub fn service(&self) -> &JobService {
        &self.service
    }

    /// Cancelling this token stops the service gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves gRPC (see [`grpc_server::router`]) until the shutdown token is
    /// cancelled or a background duty stops, then stops accepting calls,
    /// finishes in-flight ones and firings (within the grace period),
    /// flushes the producer and leaves the consumer group.
    pub async fn run_until_stopped(mut self) -> Result<(), StartupError> {
        let events = JobEventsGrpc::new(
            self.service.clone(),
            self.hub.clone(),
            self.subscriptions.clone(),
            self.shutdown.clone(),
            &self.security.streams,
        );
        let router = grpc_server::router(&self.service, events.clone(), &self.security).await?;
        self.serve_http(events);
        tracing::info!(
            port = self.port,
            tls = self.security.tls.is_some(),
            max_message_bytes = self.security.max_message_bytes,
            request_timeout = ?self.security.request_timeout,
            max_concurrent_calls = self.security.max_concurrent_calls,
            max_subscribers = self.security.streams.max_subscribers,
            "gRPC server listening"
        );
        let shutdown = self.shutdown.clone();
        let listener = TcpListenerStream::new(self.listener);
        let mut server = tokio::spawn(router.serve_with_incoming_shutdown(listener, async move {
            shutdown.cancelled().await;
            tracing::info!("shutting down: no new calls accepted");
        }));
        let mut stopped_duty = None;
        let served = tokio::select! {
            // Shutdown first: at shutdown the duties end too, and that is
            // no failure.
            biased;
            () = self.shutdown.cancelled() => drain(&mut server, self.grace).await,
            served = &mut server => served,
            (duty, ended) = self.duties.first_stopped() => {
                // (Shutdown may have come between the duty's end and this.)
                if !self.shutdown.is_cancelled() {
                    tracing::error!(
                        duty,
                        panic = ended.err().map(|err| err.to_string()),
                        "a background duty stopped before shutdown; stopping the service so that it is restarted"
                    );
                    stopped_duty = Some(duty);
                    self.shutdown.cancel();
                }
                drain(&mut server, self.grace).await
            }
        };
        let served = served.map_err(|e| StartupError::Server(e.to_string()))?;
        // Whatever ended the server, stop everything else too.
        self.shutdown.cancel();
        stop_background(self.firings, self.duties, self.helpers, self.grace).await;
        if let Err(err) = self.producer.flush(self.grace).await {
            tracing::warn!(error = %err, "producer not fully flushed");
        }
        tracing::info!("stopped");
        served.map_err(|e| StartupError::Server(e.to_string()))?;
        match stopped_duty {
            Some(duty) => Err(StartupError::DutyStopped(duty)),
            None => Ok(()),
        }
    }
}

impl Application {
    /// Serves the HTTP/JSON API (see [`crate::http`]) as a duty, over the
    /// same handlers as gRPC (`events` shared with it, so that subscribers
    /// of both count against one bound).
    fn serve_http(&mut self, events: JobEventsGrpc) {
        let jobs = JobsGrpc::new(self.service.clone());
        let max_page = self.service.settings().max_page_size;
        let metrics = self.service.metrics().clone();
        let api = Api::new(jobs, events, &self.security, max_page, metrics);
        let router = api.router(self.security.max_message_bytes);
        let Some(server) = self.http.take() else {
            return;
        };
        let (tls, shutdown) = (self.security.tls.clone(), self.shutdown.clone());
        tracing::info!(
            port = server.port(),
            tls = tls.is_some(),
            "HTTP API listening"
        );
        self.duties.spawn("HTTP API", async move {
            if let Err(err) = server.serve(router, tls.as_ref(), shutdown).await {
                tracing::error!(error = %err, "the HTTP API stopped");
            }
        });
    }
}

/// Logs what the service starts with: version, store, broker, auth.
fn log_start(settings: &Settings) {
    tracing::info!(
        version = %settings.app_version,
        environment = ?settings.environment,
        "starting scheduler-service"
    );
    let database = &settings.database;
    let store = match database.kind {
        DatabaseKind::Embedded => format!("embedded in {}", database.data_dir.display()),
        DatabaseKind::MongoDb => format!(
            "MongoDB {} (database {}, collection {})",
            redact_uri(&database.uri),
            database.db_name,
            database.collection
        ),
        DatabaseKind::Postgres => format!(
            "PostgreSQL {} (schema {})",
            redact_uri(&database.uri),
            database.db_name
        ),
    };
    let broker = match &settings.kafka {
        Some(kafka) => format!(
            "Kafka {} ({}) and gRPC subscribers",
            kafka.brokers,
            kafka.security.protocol.as_str()
        ),
        None => "in-process, to gRPC subscribers (no Kafka)".to_owned(),
    };
    tracing::info!(%store, %broker, "job store and event broker");
    match &settings.security.auth_public_key {
        Some(key) => tracing::info!(
            key_bits = key.bits(),
            "JobsService calls need an RS256 admin token"
        ),
        None => tracing::warn!(
            "AUTH_PUBLIC_KEY_FILE is not set: JobsService calls are NOT authenticated \
             (refused in production; set it to the auth service's public key)"
        ),
    }
}

/// The Kafka producer, if Kafka is configured. The topics are created
/// before serving, so that the first events have somewhere to go; if the
/// broker is down, a helper keeps trying in the background.
async fn open_kafka(
    settings: &Settings,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
    helpers: &mut Vec<JoinHandle<()>>,
) -> Result<Option<Arc<dyn JobsProducer>>, StartupError> {
    let Some(kafka) = &settings.kafka else {
        return Ok(None);
    };
    let producer = KafkaJobsProducer::new(kafka, settings.topics.clone(), metrics.clone())?;
    if let Err(err) = ensure_topics(kafka, &settings.topics, kafka.message_timeout).await {
        tracing::warn!(error = %err, "cannot create topics yet; retrying in the background");
        helpers.push(spawn_topic_creation(
            kafka.clone(),
            settings.topics.clone(),
            shutdown.clone(),
        ));
    }
    Ok(Some(Arc::new(producer)))
}

/// When the store is shared by replicas: joins them under this replica's
/// name in the shard leases (`SCHEDULER_REPLICA_ID`, else `<host
/// name>:<gRPC port>`), taking its first share (see
/// [`JobService::join_shards`]).
async fn share_shards(
    service: &JobService,
    settings: &Settings,
    port: u16,
) -> Result<Option<ShardKeeper>, StartupError> {
    let Some(leases) = service.leases() else {
        return Ok(None);
    };
    let me = settings
        .sharding
        .replica_id
        .clone()
        .unwrap_or_else(|| format!("{}:{port}", gethostname::gethostname().to_string_lossy()));
    let keeper = service
        .join_shards(leases, settings.sharding.clone(), me.clone())
        .await?;
    tracing::info!(
        replica = %me,
        shards = settings.sharding.shards.get(),
        owned = service.owned_shards().len(),
        lease = ?settings.sharding.lease,
        "sharing the jobs with the other replicas through shard leases"
    );
    Ok(Some(keeper))
}

/// Arms the jobs due within the look-ahead window; a store not answering
/// yet is left to the window loader's retries.
async fn arm_window(service: &JobService) {
    match service.load_window().await {
        Ok(count) => tracing::info!(count, "armed scheduled jobs from the store"),
        Err(err) => {
            tracing::warn!(error = %err, "cannot load scheduled jobs yet; retrying in the background")
        }
    }
}

/// The named subscriptions over the embedded store's event log, with the
/// duty that keeps the log within its retention.
fn subscriptions(
    log: Arc<dyn EventLog>,
    settings: &Settings,
    hub: &EventHub,
    service: &JobService,
    shutdown: &CancellationToken,
    duties: &mut Duties,
) -> Subscriptions {
    let retention = (
        settings.events.retention_events,
        settings.events.retention_age,
    );
    let metrics = service.metrics().clone();
    duties.spawn(
        "event log retention",
        run_retention(
            log.clone(),
            retention,
            metrics.clone(),
            shutdown.clone(),
            service.clock_jumps(),
        ),
    );
    let stall = settings.security.streams.subscriber_stall;
    Subscriptions::new(log, hub.clone(), shutdown.clone(), stall, metrics)
}

/// Starts the service's background duties (the metrics endpoint joins them
/// once bound).
fn start_duties(
    service: &JobService,
    firing_rx: UnboundedReceiver<Firing>,
    firings: &TaskTracker,
    settings: &Settings,
    shutdown: &CancellationToken,
) -> Result<Duties, StartupError> {
    let mut duties = Duties::default();
    duties.spawn(
        "firing loop",
        service
            .clone()
            .run_firing(firing_rx, firings.clone(), shutdown.clone()),
    );
    duties.spawn(
        "window loader",
        service.clone().run_window_loader(shutdown.clone()),
    );
    duties.spawn("outbox relay", service.clone().run_relay(shutdown.clone()));
    duties.spawn(
        "run-timeout sweeper",
        service.clone().run_timeout_sweeper(shutdown.clone()),
    );
    duties.spawn("retention", service.clone().run_retention(shutdown.clone()));
    if let Some(kafka) = &settings.kafka {
        for consumer in
            result_consumers(kafka, &settings.topics, service.clone(), shutdown.clone())?
        {
            duties.spawn("run-result consumer", consumer);
        }
    }
    Ok(duties)
}

/// After shutdown: waits, each within `grace`, for in-flight firings, the
/// duties and the start-up helpers to end.
async fn stop_background(
    firings: TaskTracker,
    duties: Duties,
    helpers: Vec<JoinHandle<()>>,
    grace: Duration,
) {
    firings.close();
    if tokio::time::timeout(grace, firings.wait()).await.is_err() {
        tracing::warn!(
            "firings still in flight after the grace period; the store keeps them RUNNING"
        );
    }
    let still_running = duties.join_all(grace).await;
    if still_running > 0 {
        tracing::warn!(
            still_running,
            "background duties did not stop within the grace period"
        );
    }
    for helper in helpers {
        if tokio::time::timeout(grace, helper).await.is_err() {
            tracing::warn!("a start-up task did not stop within the grace period");
        }
    }
}

/// Waits for the server to finish its in-flight calls after shutdown, at most
/// `grace`: a client that keeps an idle connection open must not hold us up.
async fn drain(
    server: &mut JoinHandle<Result<(), tonic::transport::Error>>,
    grace: Duration,
) -> Result<Result<(), tonic::transport::Error>, JoinError> {
    match tokio::time::timeout(grace, &mut *server).await {
        Ok(served) => served,
        Err(_) => {
            tracing::warn!("connections still open after the grace period; closing them");
            server.abort();
            Ok(Ok(()))
        }
    }
}

/// The producer of the service's events: to Kafka if configured, and to
/// the hub, unless the store's event log feeds it (as each event is logged,
/// with its sequence number).
fn fan_out(
    kafka: Option<Arc<dyn JobsProducer>>,
    hub: &EventHub,
    log: Option<&EmbeddedJobDB>,
) -> Arc<dyn JobsProducer> {
    let Some(log) = log else {
        return Arc::new(FanOutProducer::new(kafka, Some(hub.clone())));
    };
    let logged = hub.clone();
    let sink = Box::new(move |events: Vec<_>| events.into_iter().for_each(|e| logged.send(e)));
    if log.on_append(sink).is_err() {
        tracing::error!("the event log already had a sink; live subscribers get nothing");
    }
    Arc::new(FanOutProducer::new(kafka, None))
}

/// Opens the store the settings select and creates its indexes (a refusal
/// is logged, not fatal: queries then scan); with it, the embedded store
/// again as the event log, if it is the one.
async fn open_store(
    database: &DatabaseSettings,
    metrics: &Arc<Metrics>,
) -> Result<(Arc<dyn JobDB>, Option<EmbeddedJobDB>), StoreError> {
    let (db, log) = connect_store(database, metrics).await?;
    if let Err(err) = db.ensure_indexes().await {
        tracing::warn!(error = %err, "cannot create indexes; queries may scan every job");
    }
    Ok((db, log))
}

/// Connects to the store the settings select (and its event log).
async fn connect_store(
    database: &DatabaseSettings,
    metrics: &Arc<Metrics>,
) -> Result<(Arc<dyn JobDB>, Option<EmbeddedJobDB>), StoreError> {
    let metrics = metrics.clone();
    let (uri, name, timeout) = (&database.uri, &database.db_name, database.timeout);
    let pool_size = database.pool_size;
    let db: Arc<dyn JobDB> = match database.kind {
        DatabaseKind::Embedded => {
            let embedded =
                EmbeddedJobDB::open_with_cache(&database.data_dir, database.data_cache_bytes)?;
            let traced = TracedJobDB::new(embedded.clone(), "redb", metrics);
            return Ok((Arc::new(traced), Some(embedded)));
        }
        DatabaseKind::MongoDb => Arc::new(TracedJobDB::new(
            MongoJobDB::connect(uri, name, &database.collection, timeout, pool_size).await?,
            "mongodb",
            metrics,
        )),
        DatabaseKind::Postgres => Arc::new(TracedJobDB::new(
            PgJobDB::connect_tls(
                uri,
                name,
                timeout,
                pool_size.map_or(postgres::DEFAULT_POOL_SIZE, |size| size as usize),
                database.tls_ca.as_deref(),
            )
            .await?,
            "postgresql",
            metrics,
        )),
    };
    Ok((db, None))
}

/// Creates the topics, retrying in the background while the broker is down.
fn spawn_topic_creation(
    kafka: KafkaSettings,
    topics: TopicSettings,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        while backoff.wait(&shutdown).await {
            match ensure_topics(&kafka, &topics, kafka.message_timeout).await {
                Ok(()) => return tracing::info!("topics created"),
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?backoff.current(), "cannot create topics")
                }
            }
        }
    })
}
