# syntax=docker/dockerfile:1
# The scheduler-service image: built in the Rust image, run from Debian slim
# as a non-root user. Dependencies are compiled in their own layer (cargo-chef),
# so that a change to the sources rebuilds only this crate.

# Toolchain: the crate needs Rust 1.88 or newer (Cargo.toml rust-version).
FROM rust:1.90.0-bookworm AS chef
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /src

# The dependency recipe: manifests and lock file, without the sources.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
# rdkafka builds librdkafka from source with its configure script and make and
# links the system zlib and OpenSSL (TLS and SASL SCRAM to the brokers);
# protoc is vendored (build.rs). The base image already has these tools:
# they are listed so that the requirement is visible.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make gcc g++ pkg-config zlib1g-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin scheduler-service
COPY . .
RUN cargo build --release --locked --bin scheduler-service \
    && cp target/release/scheduler-service /usr/local/bin/scheduler-service

FROM debian:12.11-slim AS runtime
RUN groupadd --system --gid 10001 scheduler \
    && useradd --system --uid 10001 --gid scheduler --no-create-home \
        --home-dir /app --shell /usr/sbin/nologin scheduler
WORKDIR /app
# The binary needs libc, libgcc_s, libm and zlib, in the base image, and
# OpenSSL's libssl3 (librdkafka's TLS), with the system CAs that librdkafka
# trusts when KAFKA_SSL_CA_LOCATION is not set.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libssl3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/scheduler-service /app/scheduler-service
# Default topics (config/.env.topics is read relative to the working
# directory); docker-compose passes the same file as a secret via TOPICS_FILE.
COPY config/.env.topics /app/config/.env.topics
USER scheduler:scheduler
EXPOSE 9001 9080
# No gRPC client in the image: the check is that the port accepts connections
# (bash's /dev/tcp), which it does once the store and broker clients are set up.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=6 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${SERVER_PORT:-9001}"]
# SIGTERM (docker stop) stops the service gracefully.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/scheduler-service"]
