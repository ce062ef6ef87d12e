//! scheduler-service: a job scheduler microservice.
//!
//! The layers, each depending only on those below it:
//! - adapters that drive the service from outside: [`grpc`] (the
//!   `JobsService` and `JobEvents` handlers), [`http`] (the HTTP/JSON API,
//!   which runs the gRPC handlers in the process) and [`consumer`] (run
//!   results from Kafka);
//! - [`service`]: job CRUD, arming, firing, delivery of owed events, run
//!   timeouts;
//! - ports the service drives: [`store`] (the [`store::JobDB`] trait and its
//!   stores), [`broker`] (the [`broker::JobsProducer`] trait, Kafka and the
//!   in-process hub), [`timer`] (the in-memory timer), [`clock`] (the one
//!   source of the time, injectable);
//! - [`domain`]: what a job is and the errors the service speaks in.
//!
//! Beside them: [`config`] (the settings, read once at start-up),
//! [`telemetry`] (logs, traces, metrics), [`backoff`] (the one retry delay)
//! and [`duties`] (background tasks watched until shutdown). [`startup`]
//! builds it all from the settings, for `main` and the tests alike.

#![warn(missing_docs)]
// The module docs are for readers of the code and link to the private
// modules that say how each part works: read them with
// `cargo doc --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

pub mod backoff;
pub mod broker;
pub mod clock;
pub mod config;
pub mod consumer;
pub mod domain;
pub mod duties;
pub mod grpc;
pub mod http;
pub mod service;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod timer;
