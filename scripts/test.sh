#!/usr/bin/env bash
# The whole test suite: starts the test servers (installing them on first
# use), checks formatting and lints, runs every unit and integration test,
# and stops the servers. `cargo test --all-targets` also builds and runs each
# benchmark binary (benches/core, benches/e2e) with no arguments, which is its
# smoke run. Formatting and lints cover the whole workspace (test-support too).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/services.sh up
trap 'scripts/services.sh down' EXIT

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --all-targets
