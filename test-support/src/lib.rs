//! What the integration tests (`tests/`) and the benchmarks (`benches/`) of
//! the scheduler service share, so that each exists once: where the test
//! servers are and the fresh names that keep runs apart ([`servers`]), child
//! processes that cannot outlive a test and free ports to run them on
//! ([`child`]), the service binary as such a child ([`service`]), and
//! private broker and database servers that a test can kill and restart
//! ([`processes`]), a network link a test can cut ([`link`]), and a
//! service's metrics endpoint read as a scraper reads it ([`metrics`]).
//!
//! It is a workspace member built only as a dev-dependency of the service;
//! what only the tests use (the in-process harness) stays in `tests/common`,
//! and what only the benchmarks use in `benches/support`.

pub mod child;
pub mod link;
pub mod metrics;
pub mod processes;
pub mod servers;
pub mod service;

pub use child::{ChildProcess, free_port, log_file, log_tail};
pub use link::Link;
pub use metrics::scrape_metrics;
pub use processes::ServerProcess;
pub use servers::{kafka_brokers, mongodb_uri, postgres_uri, topic_vars, unique};
pub use service::ServiceChild;
