#!/usr/bin/env bash
# Scanner throughput on several capture shapes, against tshark and ngrep, in one run, on the same
# captures, searching the same encoded identifier strings. Not run in CI.
#
#   bench/scan.sh                      # every capture at its default size (generated once into bench/out/)
#   SIZE=268435456 bench/scan.sh       # the long-flow capture's size (default 1 GiB)
#   PHONE_SIZE=... MATCHES_SIZE=...    # the other captures' sizes (256 MiB, 16 MiB)
#   CAPTURES="long phone" bench/scan.sh   # only these captures
#   SCANNER_RUNS=5 bench/scan.sh       # the scanner's best of 5 runs per thread count (default 3)
#   SCANNER=example bench/scan.sh      # time the scan example (same library entry point) without
#                                      # building the whole sovereign binary
#
# For every capture it prints, side by side: the scanner with --threads 1 and --threads 2
# (best wall time of SCANNER_RUNS runs, and CPU time, user + system, whose per-core GiB/s says
# more than wall time on a busy machine), the speed-up of 2 threads over 1, and tshark and ngrep
# (one run each) with their ratio to the scanner's one-thread wall time.
#
# Captures (add one by adding a line to `generate` below and its name to CAPTURES):
#   long     long keep-alive HTTP/1.1 flows, 20-60 KB bodies (crates/scan/examples/gen_bench_capture.rs)
#   phone    many short connections shaped like a phone's traffic: one request of a few KB each,
#            JSON, form, base64 and gzip bodies, hex responses, DNS before each (sovereign_scan::phone_traffic)
#   matches  bodies dense with one identifier: 10^4 matches per request, the many-matches case
#
# Needs tshark and ngrep (Debian: apt-get install tshark ngrep). The profile is
# bench/scan-profile.toml. The scanner runs with full decoding on (TCP reassembly, HTTP, content
# codings, JSON/URL/form, nested base64 blobs, every encoding of every identifier); tshark and
# ngrep get the literal encoded strings the scanner searches for (one "frame contains" clause or
# one regex alternative each), which is less work than the scanner does: they cannot see inside
# compressed bodies.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out
mkdir -p "$out"
profile=bench/scan-profile.toml
target=${CARGO_TARGET_DIR:-target}
captures=${CAPTURES:-long phone matches}
runs=${SCANNER_RUNS:-3}

for tool in tshark ngrep python3; do
  command -v "$tool" >/dev/null || { echo "bench/scan.sh needs $tool" >&2; exit 2; }
done

cargo build --release -q -p sovereign-scan --examples
if [ "${SCANNER:-}" != example ] && cargo build --release -q -p sovereign 2>/dev/null; then
  scanner=("$target/release/sovereign" scan --format json --fail-on critical --profile "$profile")
  scanner_name="sovereign scan"
  threads_flag() { echo "--threads $1"; }
else
  # The same library entry point (run::execute), for when the rest of the binary does not build.
  echo "note: the sovereign binary did not build; timing the scan example instead" >&2
  scanner=("$target/release/examples/scan" "$profile")
  scanner_name="scan example"
  threads_flag() { :; }
fi

# The capture file of each name, generated when missing.
generate() {
  local name=$1 path
  case "$name" in
    long) path="$out/http-${SIZE:-1073741824}.pcap"
          [ -f "$path" ] || "$target/release/examples/gen_bench_capture" "$path" "${SIZE:-1073741824}" >&2 ;;
    phone) path="$out/phone-${PHONE_SIZE:-268435456}.pcap"
          [ -f "$path" ] || "$target/release/examples/gen_capture" phone "$path" "${PHONE_SIZE:-268435456}" ;;
    matches) path="$out/matches-${MATCHES_SIZE:-16777216}.pcap"
          [ -f "$path" ] || "$target/release/examples/gen_capture" matches "$path" "${MATCHES_SIZE:-16777216}" ;;
    # h2)   HTTP/2 inside TLS: its generator and key log go here, e.g.
    #       path="$out/h2.pcap"; [ -f "$path" ] || .../gen_capture h2 "$path" "$H2_SIZE"
    # quic) likewise; tshark then needs the key log (-o tls.keylog_file:...), set in `tshark_opts`.
    *) echo "bench/scan.sh: unknown capture $name" >&2; exit 2 ;;
  esac
  echo "$path"
}

"$target/release/examples/print_patterns" "$profile" > "$out/patterns.txt"
python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
pats = [l.rstrip("\n") for l in open(f"{out}/patterns.txt")]
esc = lambda p: p.replace("\\", "\\\\").replace('"', '\\"')
open(f"{out}/tshark.filter", "w").write(" || ".join(f'frame contains "{esc(p)}"' for p in pats))
open(f"{out}/ngrep.regex", "w").write("|".join(re.escape(p).replace("\\ ", " ") for p in pats))
PY
patterns=$(wc -l < "$out/patterns.txt")

now() { date +%s.%N; }
TIMEFORMAT="%3R %3U %3S"
# Best wall and CPU seconds of $runs scanner runs with $1 threads on $2: "wall cpu".
scan_best() {
  local threads=$1 capture=$2 best_wall="" best_cpu="" wall cpu
  for _ in $(seq "$runs"); do
    # shellcheck disable=SC2046
    { time THREADS=$threads "${scanner[@]}" $(threads_flag "$threads") "$capture" > "$out/scan-$threads.json" 2> "$out/scan.err" || true; } 2> "$out/scan.time"
    wall=$(awk '{ print $1 }' "$out/scan.time")
    cpu=$(awk '{ printf "%.3f", $2 + $3 }' "$out/scan.time")
    if [ -z "$best_wall" ] || python3 -c "import sys; sys.exit(0 if $wall < $best_wall else 1)"; then best_wall=$wall; fi
    if [ -z "$best_cpu" ] || python3 -c "import sys; sys.exit(0 if $cpu < $best_cpu else 1)"; then best_cpu=$cpu; fi
  done
  echo "$best_wall $best_cpu"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores; $patterns encoded identifier strings"
for name in $captures; do
  capture=$(generate "$name")
  bytes=$(stat -c %s "$capture")
  # Warm the page cache so that every tool reads from memory.
  cat "$capture" > /dev/null
  read -r wall1 cpu1 <<< "$(scan_best 1 "$capture")"
  read -r wall2 cpu2 <<< "$(scan_best 2 "$capture")"
  cmp -s "$out/scan-1.json" "$out/scan-2.json" && same=yes || same=NO
  t1=$(now)
  tshark -r "$capture" -n -Y "$(cat "$out/tshark.filter")" -T fields -e frame.number > "$out/tshark.txt" 2>/dev/null
  t2=$(now)
  ngrep -q -I "$capture" "$(cat "$out/ngrep.regex")" > "$out/ngrep.txt" 2>/dev/null || true
  t3=$(now)
  python3 - "$name" "$bytes" "$scanner_name" "$wall1" "$cpu1" "$wall2" "$cpu2" "$t1" "$t2" "$t3" "$out" "$runs" "$same" <<'PY'
import json, sys
name, bytes_, scanner = sys.argv[1], int(sys.argv[2]), sys.argv[3]
wall1, cpu1, wall2, cpu2, t1, t2, t3 = map(float, sys.argv[4:11])
out, runs, same = sys.argv[11], int(sys.argv[12]), sys.argv[13]
findings = json.load(open(f"{out}/scan-1.json"))["findings"]
sightings = sum(f["count"] for f in findings)
tshark_frames = sum(1 for _ in open(f"{out}/tshark.txt"))
ngrep_packets = sum(1 for l in open(f"{out}/ngrep.txt", errors="replace") if l.startswith("T "))
gib, mb = bytes_ / 2**30, bytes_ / 1e6
print(f"\n== {name}: {bytes_} bytes ({gib:.2f} GiB)")
print(f"{'tool':<26} {'wall s':>7} {'MB/s':>8} {'cpu s':>7} {'GiB/s/core':>10} {'vs 1 thread':>11}  result")
rows = [
    (f"{scanner} --threads 1", wall1, cpu1, f"{len(findings)} findings, {sightings} sightings"),
    (f"{scanner} --threads 2", wall2, cpu2, f"{wall1 / wall2:.2f}x faster than 1 thread; same report: {same}"),
    ("tshark", t2 - t1, None, f"{tshark_frames} frames matched"),
    ("ngrep", t3 - t2, None, f"{ngrep_packets} packets matched"),
]
for tool, wall, cpu, result in rows:
    per_core = f"{gib / cpu:10.2f}" if cpu else f"{'':10}"
    cpu_s = f"{cpu:7.2f}" if cpu else f"{'':7}"
    print(f"{tool:<26} {wall:7.2f} {mb / wall:8.1f} {cpu_s} {per_core} {wall / wall1:10.2f}x  {result}")
print(f"(scanner rows: best of {runs} runs)")
PY
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
