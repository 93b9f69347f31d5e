#!/usr/bin/env bash
# Sets up this machine (missing Debian packages, the real Codex clients the end-to-end tests
# drive) and runs every check CI runs:
# formatting, clippy with warnings denied, and all tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/setup-clients.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
