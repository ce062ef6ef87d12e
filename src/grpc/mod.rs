//! The gRPC layer: the generated code, the `JobsService` and `JobEvents`
//! handlers, conversions between proto messages and the domain, the one
//! table that maps domain errors to gRPC status codes, admin authentication
//! ([`auth`]), the per-service call limits ([`CallLimits`]) and the span and
//! metrics of every call ([`Observed`]).

pub mod auth;
mod convert;
mod events;
mod handlers;
mod limits;
mod observe;
mod status;
#[cfg(test)]
mod stub;

pub use events::JobEventsGrpc;
pub use handlers::JobsGrpc;
pub use limits::CallLimits;
pub use observe::Observed;

/// Code generated from `proto/job.proto` (package `proto`).
pub mod proto {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("proto");

    /// The encoded file descriptor set of both proto files (`proto` and
    /// `scheduler.v1`), served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("job_descriptor");
}

/// Code generated from `proto/events.proto` (package `scheduler.v1`).
pub mod scheduler {
    /// Version 1 of the executor-facing API: `JobEvents`.
    pub mod v1 {
        #![allow(missing_docs, clippy::all, clippy::pedantic)]
        tonic::include_proto!("scheduler.v1");
    }
}
