//! The gRPC layer: the generated `proto` code, the `JobsService` handlers,
//! conversions between proto messages and the domain, and the one table
//! that maps domain errors to gRPC status codes.

mod convert;
mod handlers;
mod status;

pub use handlers::JobsGrpc;
pub use status::error_to_status;

/// Code generated from `proto/job.proto` (package `proto`).
pub mod proto {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("proto");

    /// The encoded file descriptor set, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("job_descriptor");
}
