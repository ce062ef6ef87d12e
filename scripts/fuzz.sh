#!/usr/bin/env bash
# A short, bounded run of every fuzz target (fuzz/: the run-result JSON, the
# proto-to-domain conversion, the authorization metadata and JWT decoding):
# FUZZ_SECONDS each (default 25), starting from the seeds kept in
# fuzz/seeds/<target> (inputs worth keeping, crashes found once among them)
# and from fuzz/corpus/<target> (what earlier runs on this machine found,
# not committed). A crash fails the run; libFuzzer writes the input to
# fuzz/artifacts/<target>/ and prints how to reproduce it.
#
# Stable Rust: `--sanitizer none` (the targets are safe Rust, and
# AddressSanitizer needs nightly flags); libFuzzer's coverage instrumentation
# works on stable. `--dev`: unoptimised, with debug assertions and overflow
# checks; it builds in about half the time of an optimised build, which
# matters more in a short run than the executions a second it gives up. For
# a long run, `cargo fuzz run --sanitizer none <target>` (optimised).
# Installs cargo-fuzz, pinned, when it is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECONDS=${FUZZ_SECONDS:-25}

if [[ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
  cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
# The service's target folder, so that the build scripts and proc macros its
# own build compiled are not compiled again for the fuzz workspace.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo fuzz build --dev --sanitizer none
for target in $(cargo fuzz list); do
  mkdir -p "fuzz/corpus/$target"
  cargo fuzz run --dev --sanitizer none "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$FUZZ_SECONDS" -timeout=10
done
