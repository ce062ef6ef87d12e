//! The `scheduler-service` daemon: parse the configuration, start the
//! service, and run until SIGINT or SIGTERM.

use std::process::ExitCode;

use scheduler_service::{config::Settings, startup::Application, telemetry::init_telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("scheduler-service: {err}");
            return ExitCode::from(2);
        }
    };
    let telemetry = match init_telemetry(settings.environment, &settings.observability) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("scheduler-service: {err}");
            return ExitCode::from(2);
        }
    };
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(err) => {
            tracing::error!(error = %err, "cannot start");
            telemetry.shutdown().await;
            return ExitCode::FAILURE;
        }
    };
    let shutdown = app.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        shutdown.cancel();
    });
    let stopped = app.run_until_stopped().await;
    if let Err(err) = &stopped {
        tracing::error!(error = %err, "stopped with an error");
    }
    // Export the last spans before exiting, while the runtime still runs:
    // the exporter's connection lives on it.
    telemetry.shutdown().await;
    match stopped {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (`docker stop`).
async fn wait_for_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
