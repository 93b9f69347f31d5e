#!/usr/bin/env bash
# Sets up this machine (missing Debian packages), builds tether in release mode and runs it with
# the given arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -p tether-cli >&2
exec target/release/tether "$@"
