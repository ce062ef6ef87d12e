//! scheduler-service: a job scheduler microservice.
//!
//! Clients create jobs over gRPC ([`grpc`]); the [`service`] stores them
//! through the [`store::JobDB`] trait, arms the in-memory [`timer`], and at
//! each job's time claims it and publishes a run event through the
//! [`broker::JobsProducer`] trait. Executors report results on a topic that
//! [`broker::consumer`] reads back into the store; [`background`] runs the
//! periodic duties (window loads, outbox relay, stuck runs). [`startup`]
//! wires it all from [`config`].

#![warn(missing_docs)]

pub mod background;
pub mod broker;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod service;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod timer;
