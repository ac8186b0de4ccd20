#!/usr/bin/env bash
# Runs every test Sovereign has, from a fresh machine: installs what the tests need if it is
# missing, then checks formatting and lints, runs the test suites and builds the fuzz targets.
set -euo pipefail
cd "$(dirname "$0")/.."

# One target directory outside the checkout, shared by every clone on this machine, so that CI
# on a fresh clone reuses what earlier builds compiled.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sovereign/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE=1

# System packages the tests use: Chromium and its WebDriver for the dashboard's browser test.
# (command to look for, Debian package that provides it)
missing=()
for pair in chromium:chromium chromedriver:chromium-driver; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
    echo "installing ${missing[*]} ..."
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

step() { echo; echo "==> $*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

if [ -f fuzz/Cargo.toml ]; then
    step "fuzz targets build"
    cargo build --manifest-path fuzz/Cargo.toml --locked
fi
