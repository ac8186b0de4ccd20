#!/usr/bin/env bash
# Scanner throughput against tshark and ngrep, in one run, on the same capture, searching the
# same encoded identifier strings. Not run in CI.
#
#   bench/scan.sh            # 1 GiB capture (generated once into bench/out/)
#   SIZE=268435456 bench/scan.sh
#   SCANNER_RUNS=5 bench/scan.sh   # the scanner's best of 5 runs (default 3); the others run once
#
# Besides wall-clock MB/s for every tool, it prints the scanner's CPU time (user + system) and
# the throughput per core that follows from it: the scanner is single-threaded, so on a busy
# machine CPU time says more than wall time.
#
# Needs tshark and ngrep (Debian: apt-get install tshark ngrep). The capture is realistic HTTP/1.1
# traffic with planted identifiers (crates/scan/examples/gen_bench_capture.rs); the profile is
# bench/scan-profile.toml. The scanner runs with full decoding on (TCP reassembly, HTTP, content
# codings, JSON/URL/form, nested base64 blobs, every encoding of every identifier); tshark and
# ngrep get the literal encoded strings the scanner searches for (one "frame contains" clause or
# one regex alternative each), which is less work than the scanner does: they cannot see inside
# compressed bodies.
set -euo pipefail
cd "$(dirname "$0")/.."
size=${SIZE:-1073741824}
out=bench/out
mkdir -p "$out"
capture="$out/http-$size.pcap"
profile=bench/scan-profile.toml
target=${CARGO_TARGET_DIR:-target}

for tool in tshark ngrep python3; do
  command -v "$tool" >/dev/null || { echo "bench/scan.sh needs $tool" >&2; exit 2; }
done

cargo build --release -q -p sovereign-scan --examples
if cargo build --release -q -p sovereign 2>/dev/null; then
  scanner=("$target/release/sovereign" scan --format json --fail-on critical --profile "$profile")
  scanner_name="sovereign scan"
else
  # The same library entry point (run::execute), for when the rest of the binary does not build.
  echo "note: the sovereign binary did not build; timing the scan example instead" >&2
  scanner=("$target/release/examples/scan" "$profile")
  scanner_name="scan example"
fi

if [ ! -f "$capture" ]; then
  "$target/release/examples/gen_bench_capture" "$capture" "$size"
fi
bytes=$(stat -c %s "$capture")

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

# Warm the page cache so that every tool reads from memory.
cat "$capture" > /dev/null

now() { date +%s.%N; }
runs=${SCANNER_RUNS:-3}
best_wall=""
best_cpu=""
TIMEFORMAT="%3U %3S"
for _ in $(seq "$runs"); do
  t0=$(now)
  { time "${scanner[@]}" "$capture" > "$out/scan.json" 2> "$out/scan.err" || true; } 2> "$out/scan.time"
  t1=$(now)
  wall=$(python3 -c "print(f'{$t1 - $t0:.3f}')")
  cpu=$(awk '{ printf "%.3f", $1 + $2 }' "$out/scan.time")
  if [ -z "$best_wall" ] || python3 -c "import sys; sys.exit(0 if $wall < $best_wall else 1)"; then best_wall=$wall; fi
  if [ -z "$best_cpu" ] || python3 -c "import sys; sys.exit(0 if $cpu < $best_cpu else 1)"; then best_cpu=$cpu; fi
done
# The tools below are timed from here; the scanner's row gets its best wall time.
t1=$(now)
t0=$(python3 -c "print($t1 - $best_wall)")
tshark -r "$capture" -n -Y "$(cat "$out/tshark.filter")" -T fields -e frame.number > "$out/tshark.txt" 2>/dev/null
t2=$(now)
ngrep -q -I "$capture" "$(cat "$out/ngrep.regex")" > "$out/ngrep.txt" 2>/dev/null || true
t3=$(now)

python3 - "$bytes" "$patterns" "$scanner_name" "$t0" "$t1" "$t2" "$t3" "$out" "$best_cpu" "$runs" <<'PY'
import json, sys
bytes_, patterns, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
t0, t1, t2, t3 = map(float, sys.argv[4:8])
out = sys.argv[8]
cpu, runs = float(sys.argv[9]), int(sys.argv[10])
findings = json.load(open(f"{out}/scan.json"))["findings"]
sightings = sum(f["count"] for f in findings)
tshark_frames = sum(1 for _ in open(f"{out}/tshark.txt"))
ngrep_packets = sum(1 for l in open(f"{out}/ngrep.txt", errors="replace") if l.startswith("T "))
rows = [
    (name, t1 - t0, f"{len(findings)} findings, {sightings} sightings"),
    ("tshark", t2 - t1, f"{tshark_frames} frames matched"),
    ("ngrep", t3 - t2, f"{ngrep_packets} packets matched"),
]
mb = bytes_ / 1e6
print(f"capture: {bytes_} bytes ({bytes_ / 2**30:.2f} GiB), {patterns} encoded identifier strings")
print(f"{'tool':<16} {'seconds':>8} {'MB/s':>9} {'vs scanner':>11}  result")
base = rows[0][1]
for tool, secs, result in rows:
    print(f"{tool:<16} {secs:8.2f} {mb / secs:9.1f} {secs / base:10.1f}x  {result}")
print(f"{name}: best of {runs} runs; CPU time (user + system) {cpu:.2f} s, "
      f"{bytes_ / 2**30 / cpu:.2f} GiB/s per core ({mb / cpu:.1f} MB/s)")
PY
