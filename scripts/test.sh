#!/usr/bin/env bash
# The whole test suite: starts the test servers (installing them on first
# use), checks formatting and lints, runs every unit and integration test,
# runs each benchmark's smoke configuration, and stops the servers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/services.sh up
trap 'scripts/services.sh down' EXIT

cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
if [ -d benches ]; then
  for bench in benches/*.rs; do
    name=$(basename "$bench" .rs)
    echo "== smoke run of benchmark $name"
    cargo bench --bench "$name" -- --smoke
  done
fi
