#!/usr/bin/env bash
# The whole test suite: starts the test servers (installing them on first
# use), checks formatting and lints, runs every unit and integration test,
# and stops the servers. `cargo test --all-targets` also builds and runs each
# benchmark binary (benches/*.rs) with no arguments, which is its smoke run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/services.sh up
trap 'scripts/services.sh down' EXIT

cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
