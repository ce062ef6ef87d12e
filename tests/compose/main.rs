//! The docker-compose development environment, checked without a Docker
//! engine: `docker-compose.yml` (the scheduler, MongoDB, ZooKeeper, Kafka),
//! `docker-compose.override.yml` (mongo-express, zoonavigator, kafka-ui,
//! grpcui, and the observability stack: Jaeger, Prometheus, Grafana), `.env`,
//! one folder per service and the root `Dockerfile`.
//!
//! `docker-compose` (Debian's package, v1.29) must be on PATH: the tests fail
//! without it. The tests in `run` and `database` also need the servers that
//! `scripts/services.sh up` starts (a Kafka-protocol broker on
//! 127.0.0.1:9092, a MongoDB-protocol server on 127.0.0.1:27017 and
//! PostgreSQL); one test of `database` runs only on a real MongoDB
//! (`MONGODB_URI`, with `--ignored`).
//!
//! One module per subject: `compose` (the compose files and `.env`),
//! `dockerfile` (a Dockerfile parser and the image checks), `prometheus`
//! (its scrape configuration), `promql` (what a dashboard query selects),
//! `grafana` (its datasources and dashboards), `observability` (how the
//! three are wired), `run` (the service run with the compose environment)
//! and `database` (the login and database the compose secrets give);
//! `compose_files` reads the files they all check, and `settings` reads the
//! scheduler's settings from them with the service's own code.

mod compose;
mod compose_files;
mod database;
mod dockerfile;
mod grafana;
mod observability;
mod prometheus;
mod promql;
mod run;
mod settings;
