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

# System packages the tests use: Chromium and its WebDriver for the dashboard's browser test,
# tcpdump for the end-to-end demo (it captures the phones' loopback traffic), and PostgreSQL 15, whose binaries the cloud's tests use to start a throwaway cluster of their own
# (nothing is done to any server the package may start).
# (command to look for, Debian package that provides it)
missing=()
# etcd 3.4 (server and etcdctl) for the directory's tests, which start a three-member cluster
# of their own on loopback; protoc because the etcd client compiles etcd's protocol files;
# iproute2 and curl for the separate-hosts suite (crates/cli/tests/it/hosts.rs), which puts each
# site in a network namespace of its own (it needs root, as CI has) and talks to it with curl.
for pair in chromium:chromium chromedriver:chromium-driver tcpdump:tcpdump etcd:etcd-server \
    etcdctl:etcd-client protoc:protobuf-compiler ip:iproute2 curl:curl; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql-15)
if ((${#missing[@]})); then
    echo "installing ${missing[*]} ..."
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

step() { echo; echo "==> $*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

# The embedded default (`cargo run --release -- serve`) must build on a machine without protoc:
# only the `etcd` feature (sites on several hosts) pulls in the etcd client, whose build needs it.
step "the default build needs no protoc"
if cargo tree --locked -p sovereign -e normal,build --prefix none | grep -q '^etcd-client '; then
    echo "the sovereign binary's default features depend on etcd-client (needs protoc to build)" >&2
    exit 1
fi

# Lints on the default features (what `cargo run` builds) and on every feature (what the tests
# build: the etcd directory's suites need `etcd`).
step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "bash -n bench/*.sh (the benchmarks are not run in CI, but must parse)"
for script in bench/*.sh; do bash -n "$script"; done

step "cargo test"
cargo test --workspace --all-features --locked

# The cloud's and the CLI's integration tests again with every region on PostgreSQL: one
# throwaway cluster per test process (initdb in a temp dir, a free loopback port), a fresh
# database per region, stopped and removed when the tests end.
step "cargo test (regions on PostgreSQL)"
SOVEREIGN_TEST_BACKEND=postgres cargo test -p sovereign-cloud -p sovereign --test it --all-features --locked

if [ -f fuzz/Cargo.toml ]; then
    step "fuzz targets build"
    cargo build --manifest-path fuzz/Cargo.toml --locked
fi
