#!/usr/bin/env bash
# Messages per second end to end through the cloud against raw SQLite writes, in one run.
# Usage: bench/messages.sh [--pairs N] [--messages M]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --release -p sovereign-bench --bin messages -- "$@"
