#!/usr/bin/env bash
# The whole test suite: starts the test servers (installing them on first
# use), checks formatting and lints, runs every unit and integration test,
# and stops the servers. `cargo test --all-targets` also builds and runs each
# benchmark binary (benches/core, benches/e2e) with no arguments, which is its
# smoke run. Formatting and lints cover the whole workspace (test-support too).
# Before the tests, scripts/fuzz.sh runs each fuzz target (fuzz/, a workspace
# of its own, its formatting checked here too) for a short bounded time.
# After them, scripts/schemathesis.sh fuzzes the HTTP API from its OpenAPI
# document, bounded in time too.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/services.sh up
trap 'scripts/services.sh down' EXIT

cargo fmt --all --check
cargo fmt --manifest-path fuzz/Cargo.toml --check
cargo clippy --workspace --all-targets -- -D warnings
scripts/fuzz.sh
cargo test --all-targets
scripts/schemathesis.sh
