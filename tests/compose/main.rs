//! The docker-compose development environment, checked without a Docker
//! engine: `docker-compose.yml` (the scheduler, MongoDB, ZooKeeper, Kafka),
//! `docker-compose.override.yml` (mongo-express, zoonavigator, kafka-ui,
//! grpcui, and the observability stack: Jaeger, Prometheus, Grafana), `.env`,
//! one folder per service and the root `Dockerfile`.
//!
//! `docker-compose` (Debian's package, v1.29) must be on PATH: the tests fail
//! without it. The test in `run` also needs the servers that
//! `scripts/services.sh up` starts (a Kafka-protocol broker on
//! 127.0.0.1:9092 and a MongoDB-protocol server on 127.0.0.1:27017).
//!
//! One module per subject: `compose` (the compose files and `.env`),
//! `dockerfile` (a Dockerfile parser and the image checks), `prometheus`
//! (its scrape configuration), `promql` (what a dashboard query selects),
//! `grafana` (its datasources and dashboards), `observability` (how the
//! three are wired) and `run` (the service run with the compose
//! environment);
//! `compose_files` reads the files they all check, and `settings` reads the
//! scheduler's settings from them with the service's own code.

mod compose;
mod compose_files;
mod dockerfile;
mod grafana;
mod observability;
mod prometheus;
mod promql;
mod run;
mod settings;
