//! Logging: `tracing` with the level from `RUST_LOG` (default `info`), as
//! JSON lines outside development and human-readable on a developer's machine.

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::Environment;

/// Installs the global subscriber; a second call (as in tests) is a no-op.
pub fn init_tracing(environment: Environment) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match environment {
        Environment::Development => builder.try_init(),
        Environment::Staging | Environment::Production => {
            builder.json().flatten_event(true).try_init()
        }
    };
    // Already installed: keep the first subscriber.
    drop(result);
}
