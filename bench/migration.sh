#!/usr/bin/env bash
# Migration throughput with verification on, and live-request latency with and without a
# migration running, in one run.
# Usage: bench/migration.sh [--users N] [--contacts N] [--photos N] [--clients N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --release -p sovereign-bench --bin migration -- "$@"
