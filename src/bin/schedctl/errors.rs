//! What can go wrong in schedctl, the one line it prints for it, and the
//! exit code of each kind: the one table from gRPC status codes to code
//! names and exit codes ([`classify`]).

use scheduler_service::grpc::ERROR_FIELD;
use tonic::{Code, Status};

/// The exit codes, as `--help` and the README list them. Usage errors (2)
/// are clap's own.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  any other error
  2  usage error (a bad flag or value)
  3  invalid argument, failed precondition, out of range
  4  not found
  5  already exists, aborted (a conflict)
  6  unauthenticated, permission denied
  7  unavailable, deadline exceeded, cannot connect";

/// Everything that ends a command early.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The service answered with an error status.
    #[error("{}", .0.message())]
    Status(Status),
    /// No connection could be made.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address given.
        addr: String,
        /// Why, with its causes.
        reason: String,
    },
    /// The connection or an answer took longer than `--timeout-secs`.
    #[error("no answer within {0} s")]
    Timeout(u64),
    /// A file named on the command line could not be read.
    #[error("cannot read {what}: {source}")]
    Input {
        /// The flag and the file.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// The output could not be written.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// An output object could not be encoded.
    #[error("cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl CliError {
    /// A failed connection to `addr`, with the chain of causes (tonic's own
    /// message is only "transport error").
    pub fn connect(addr: &str, err: &dyn std::error::Error) -> CliError {
        let (mut reason, mut last) = (err.to_string(), err.to_string());
        let mut cause = err.source();
        while let Some(next) = cause {
            // Layers often repeat their cause's words: each is said once.
            let text = next.to_string();
            if text != last {
                reason = format!("{reason}: {text}");
            }
            (last, cause) = (text, next.source());
        }
        CliError::Connect {
            addr: addr.to_owned(),
            reason,
        }
    }

    /// The gRPC code this error stands for.
    pub fn code(&self) -> Code {
        match self {
            CliError::Status(status) => status.code(),
            CliError::Connect { .. } => Code::Unavailable,
            CliError::Timeout(_) => Code::DeadlineExceeded,
            CliError::Input { .. } => Code::InvalidArgument,
            CliError::Output(_) | CliError::Json(_) => Code::Unknown,
        }
    }

    /// The field the service named as at fault, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            CliError::Status(status) => status.metadata().get(ERROR_FIELD)?.to_str().ok(),
            _ => None,
        }
    }

    /// The one line printed for it:
    /// `error: <CODE_NAME>: <message>[ (field: <name>)]`.
    pub fn line(&self) -> String {
        let (name, _) = classify(self.code());
        let message = self.to_string().replace(['\n', '\r'], " ");
        match self.field() {
            Some(field) => format!("error: {name}: {message} (field: {field})"),
            None => format!("error: {name}: {message}"),
        }
    }

    /// The process's exit code for it.
    pub fn exit_code(&self) -> u8 {
        classify(self.code()).1
    }

    /// Whether the reader of the output went away (`schedctl ... | head`):
    /// not an error of the command.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Output(err) if err.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// The one table: each gRPC code's name and the exit code that stands for
/// it (see [`EXIT_CODES_HELP`]).
pub fn classify(code: Code) -> (&'static str, u8) {
    match code {
        Code::Ok => ("OK", 0),
        Code::InvalidArgument => ("INVALID_ARGUMENT", 3),
        Code::FailedPrecondition => ("FAILED_PRECONDITION", 3),
        Code::OutOfRange => ("OUT_OF_RANGE", 3),
        Code::NotFound => ("NOT_FOUND", 4),
        Code::AlreadyExists => ("ALREADY_EXISTS", 5),
        Code::Aborted => ("ABORTED", 5),
        Code::Unauthenticated => ("UNAUTHENTICATED", 6),
        Code::PermissionDenied => ("PERMISSION_DENIED", 6),
        Code::Unavailable => ("UNAVAILABLE", 7),
        Code::DeadlineExceeded => ("DEADLINE_EXCEEDED", 7),
        Code::Cancelled => ("CANCELLED", 1),
        Code::Unknown => ("UNKNOWN", 1),
        Code::ResourceExhausted => ("RESOURCE_EXHAUSTED", 1),
        Code::Unimplemented => ("UNIMPLEMENTED", 1),
        Code::Internal => ("INTERNAL", 1),
        Code::DataLoss => ("DATA_LOSS", 1),
    }
}
