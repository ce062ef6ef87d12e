//! How replicas share the jobs (see [`crate::domain::shard`]):
//! `SCHEDULER_SHARDS`, the number of shards (default 64, at most 1024; the
//! same on every replica of a deployment, changed only with every replica
//! stopped); `SCHEDULER_SHARD_LEASE_MS`, how long a replica's shard leases
//! last without renewal (default 5000: a dead replica's shards move to the
//! others within it); `SCHEDULER_REPLICA_ID`, the replica's name in the
//! leases (default `<host name>:<gRPC port>`, so that a replica restarted
//! in place takes its own leases back at once).

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, value, vars};
use crate::domain::shard::{MAX_SHARDS, ShardCount};

/// How replicas share the jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardingSettings {
    /// How many shards the jobs fall into.
    pub shards: ShardCount,
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// The replica's name in the leases; `None`: host name and gRPC port.
    pub replica_id: Option<String>,
}

/// The default number of shards: enough for an even share on up to a few
/// dozen replicas (each owns `64 / replicas`, within one).
const DEFAULT_SHARDS: u16 = 64;

/// The shortest lease: renewals go out ten times a lease, and a shorter
/// one would make a slow store round trip cost a replica its shards.
const MIN_LEASE: Duration = Duration::from_millis(500);

impl Default for ShardingSettings {
    fn default() -> Self {
        ShardingSettings {
            shards: ShardCount::new(DEFAULT_SHARDS).unwrap_or_else(|| unreachable!()),
            lease: Duration::from_secs(5),
            replica_id: None,
        }
    }
}

/// The sharding variables.
#[derive(Deserialize)]
#[serde(default)]
pub(super) struct ShardingVars {
    #[serde(deserialize_with = "value::positive")]
    scheduler_shards: u16,
    #[serde(deserialize_with = "value::millis")]
    scheduler_shard_lease_ms: Duration,
    scheduler_replica_id: Option<String>,
}

impl Default for ShardingVars {
    fn default() -> Self {
        let defaults = ShardingSettings::default();
        ShardingVars {
            scheduler_shards: defaults.shards.get(),
            scheduler_shard_lease_ms: defaults.lease,
            scheduler_replica_id: None,
        }
    }
}

impl ShardingVars {
    /// The settings; a value out of bounds names its variable.
    pub(super) fn into_settings(self) -> Result<ShardingSettings, ConfigError> {
        let shards = ShardCount::new(self.scheduler_shards).ok_or_else(|| {
            ConfigError::new(
                vars::SCHEDULER_SHARDS,
                format!("must be between 1 and {MAX_SHARDS}"),
            )
        })?;
        if self.scheduler_shard_lease_ms < MIN_LEASE {
            return Err(ConfigError::new(
                vars::SCHEDULER_SHARD_LEASE_MS,
                format!("must be at least {}", MIN_LEASE.as_millis()),
            ));
        }
        Ok(ShardingSettings {
            shards,
            lease: self.scheduler_shard_lease_ms,
            replica_id: self.scheduler_replica_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{tests::settings, vars};
    use super::*;

    #[test]
    fn shards_and_leases_are_read_and_bounded() {
        assert_eq!(settings(&[]).unwrap().sharding, ShardingSettings::default());
        let set = settings(&[
            (vars::SCHEDULER_SHARDS, "256"),
            (vars::SCHEDULER_SHARD_LEASE_MS, "2000"),
            (vars::SCHEDULER_REPLICA_ID, "scheduler-0"),
        ])
        .unwrap()
        .sharding;
        assert_eq!(set.shards.get(), 256);
        assert_eq!(set.lease, Duration::from_secs(2));
        assert_eq!(set.replica_id.as_deref(), Some("scheduler-0"));
        for (name, bad) in [
            (vars::SCHEDULER_SHARDS, "0"),
            (vars::SCHEDULER_SHARDS, "1025"),
            (vars::SCHEDULER_SHARDS, "70000"),
            (vars::SCHEDULER_SHARD_LEASE_MS, "499"),
        ] {
            let err = settings(&[(name, bad)]).unwrap_err();
            assert_eq!(err.name, name, "{bad}: {err}");
        }
    }
}
