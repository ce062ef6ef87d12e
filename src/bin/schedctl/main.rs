//! schedctl: the scheduler service's command-line client. It speaks gRPC
//! to `proto.JobsService` (jobs, schedules, runs) and
//! `scheduler.v1.JobEvents` (events, results) with the clients generated in
//! the library, prints tables or JSON lines, and exits with a code per kind
//! of error (see [`errors::classify`]).
//!
//! Modules: [`args`] (the command line), [`requests`] (flags to request
//! messages), [`client`] (connection, token, deadlines), [`commands`] (the
//! calls), [`output`] (what is printed: the HTTP API's JSON forms, or
//! tables of them), [`errors`] (error lines and exit codes).

mod args;
mod client;
mod commands;
mod errors;
mod output;
mod requests;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.is_broken_pipe() => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{}", err.line());
            ExitCode::from(err.exit_code())
        }
    }
}
