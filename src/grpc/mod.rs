//! The gRPC layer: the generated code, the `JobsService` and `JobEvents`
//! handlers, conversions between proto messages and the domain, the one
//! table that maps domain errors to gRPC status codes, admin authentication
//! ([`auth`]), the per-service call limits ([`CallLimits`]) and the span and
//! metrics of every call ([`Observed`]), labelled by the methods the
//! generated services have ([`methods_of`]).

pub mod auth;
mod convert;
mod events;
mod handlers;
mod history;
mod limits;
mod observe;
mod recurrence;
mod retry;
mod status;
#[cfg(test)]
mod stub;

use std::sync::LazyLock;

use prost::Message;

pub use convert::timestamp;
pub use events::JobEventsGrpc;
pub use handlers::JobsGrpc;
pub use limits::CallLimits;
pub use observe::Observed;
pub use status::ERROR_FIELD;

/// Code generated from `proto/job.proto` (package `proto`).
pub mod proto {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("proto");

    /// The encoded file descriptor set of both proto files (`proto` and
    /// `scheduler.v1`), served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("job_descriptor");
}

/// The methods of the service `service` (its full name, e.g.
/// `proto.JobsService`) in the descriptor set the build compiled from
/// `proto/`: a new RPC is known as soon as it is in a proto file. Empty for
/// a service that is not there.
pub fn methods_of(service: &str) -> Vec<&'static str> {
    /// `(full service name, method name)` of every method.
    static METHODS: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
        let set = match prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET) {
            Ok(set) => set,
            Err(err) => {
                // Built from protoc's own output: not expected. Every call
                // is then labelled as an unknown method.
                tracing::error!(error = %err, "cannot read the compiled descriptor set");
                return Vec::new();
            }
        };
        let mut methods = Vec::new();
        for file in set.file {
            let package = file.package();
            for service in &file.service {
                let name = match package {
                    "" => service.name().to_owned(),
                    package => format!("{package}.{}", service.name()),
                };
                methods.extend(
                    service
                        .method
                        .iter()
                        .map(|method| (name.clone(), method.name().to_owned())),
                );
            }
        }
        methods
    });
    METHODS
        .iter()
        .filter(|(owner, _)| owner == service)
        .map(|(_, method)| method.as_str())
        .collect()
}

/// Code generated from `proto/events.proto` (package `scheduler.v1`).
pub mod scheduler {
    /// Version 1 of the executor-facing API: `JobEvents`.
    pub mod v1 {
        #![allow(missing_docs, clippy::all, clippy::pedantic)]
        tonic::include_proto!("scheduler.v1");
    }
}

#[cfg(test)]
mod tests {
    use tonic::server::NamedService;

    use super::*;

    #[test]
    fn the_methods_of_each_service_come_from_the_proto_files() {
        type Jobs = proto::jobs_service_server::JobsServiceServer<JobsGrpc>;
        type Events = scheduler::v1::job_events_server::JobEventsServer<JobEventsGrpc>;
        assert_eq!(
            methods_of(Jobs::NAME),
            [
                "CreateJob",
                "GetJob",
                "ListJobs",
                "UpdateJob",
                "DeleteJob",
                "PauseJob",
                "ResumeJob",
                "TriggerJob",
                "RerunJob",
                "PreviewSchedule",
                "ListJobRuns",
                "CountJobs"
            ]
        );
        assert_eq!(
            methods_of(Events::NAME),
            ["Subscribe", "ReportResult", "Ack"]
        );
        assert!(methods_of("grpc.health.v1.Health").is_empty());
    }
}
