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
# (one run each) with their ratio to the scanner's one-thread wall time (and tshark's CPU time
# and its ratio to the scanner's one-thread CPU time).
#
# Captures (add one by adding a line to `generate` below and its name to CAPTURES):
#   long     long keep-alive HTTP/1.1 flows, 20-60 KB bodies (crates/scan/examples/gen_bench_capture.rs)
#   phone    many short connections shaped like a phone's traffic: one request of a few KB each,
#            JSON, form, base64 and gzip bodies, hex responses, DNS before each (sovereign_scan::phone_traffic)
#   matches  bodies dense with one identifier: 10^4 matches per request, the many-matches case
#   h2       HTTP/2 inside TLS 1.3 (rustls in memory, AES-128-GCM and ChaCha20 in turn): many
#            connections, HPACK with Huffman and the dynamic table, JSON and gzip'd JSON DATA
#            (crates/scan/examples/gen/h2.rs), written with its key log (H2_SIZE, default 256 MiB)
#   quic     QUIC v1 with HTTP/3: many connections, JSON bodies (crates/scan/examples/gen/quic.rs
#            on sovereign_scan::quic::synth), written with its key log (QUIC_SIZE, default 256 MiB)
#
# The encrypted captures are scanned with their key log (--keylog), and tshark is given the same
# key log (-o tls.keylog_file:...) and a filter over the fields where it puts decrypted content:
# for h2 `http2.header.value` (HPACK decoded) and `http2.data.data` (DATA, decompressed by its
# content-encoding), for quic `quic.stream_data` (each decrypted STREAM frame, neither
# reassembled nor QPACK-decoded: tshark 4.0 does not dissect HTTP/3 frames), each beside
# `frame contains` for what is in the clear (quic only, see below). ngrep cannot decrypt: its
# row says so.
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
  keys_flag() { [ -z "${KEYLOG:-}" ] || echo "--keylog $KEYLOG"; }
else
  # The same library entry point (run::execute), for when the rest of the binary does not build.
  echo "note: the sovereign binary did not build; timing the scan example instead" >&2
  scanner=("$target/release/examples/scan" "$profile")
  scanner_name="scan example"
  threads_flag() { :; }
  keys_flag() { :; } # the example reads KEYLOG
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
    h2) path="$out/h2-${H2_SIZE:-268435456}.pcap"
          [ -f "$path" ] || "$target/release/examples/gen_capture" h2 "$path" "${H2_SIZE:-268435456}" ;;
    quic) path="$out/quic-${QUIC_SIZE:-268435456}.pcap"
          [ -f "$path" ] || "$target/release/examples/gen_capture" quic "$path" "${QUIC_SIZE:-268435456}" ;;
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
# Inside encryption: the fields that hold what tshark decrypted (and decoded), per capture.
# (No `frame contains` for h2: the only clear bytes are TLS hellos without identifiers, and a
# third field would pass the 128 KiB limit of one command-line argument.)
for name, fields in [("h2", ["http2.header.value", "http2.data.data"]),
                     ("quic", ["frame", "quic.stream_data"])]:
    open(f"{out}/tshark-{name}.filter", "w").write(
        " || ".join(f'{f} contains "{esc(p)}"' for p in pats for f in fields))
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
    { time THREADS=$threads "${scanner[@]}" $(threads_flag "$threads") $(keys_flag) "$capture" > "$out/scan-$threads.json" 2> "$out/scan.err" || true; } 2> "$out/scan.time"
    wall=$(awk '{ print $1 }' "$out/scan.time")
    cpu=$(awk '{ printf "%.3f", $2 + $3 }' "$out/scan.time")
    if [ -z "$best_wall" ] || python3 -c "import sys; sys.exit(0 if $wall < $best_wall else 1)"; then best_wall=$wall; fi
    if [ -z "$best_cpu" ] || python3 -c "import sys; sys.exit(0 if $cpu < $best_cpu else 1)"; then best_cpu=$cpu; fi
  done
  echo "$best_wall $best_cpu"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores; $patterns encoded identifier strings"
# Per capture: the key log (given to the scanner and to tshark), tshark's filter, and whether
# ngrep can see the content at all.
keylog_of() { case "$1" in h2|quic) echo "$2.keys" ;; *) echo "" ;; esac; }
tshark_filter_of() { case "$1" in h2|quic) echo "$out/tshark-$1.filter" ;; *) echo "$out/tshark.filter" ;; esac; }

for name in $captures; do
  capture=$(generate "$name")
  bytes=$(stat -c %s "$capture")
  keylog=$(keylog_of "$name" "$capture")
  tshark_keys=()
  if [ -n "$keylog" ]; then
    tshark_keys=(-o "tls.keylog_file:$keylog")
    export KEYLOG=$keylog
  else
    unset KEYLOG
  fi
  # Warm the page cache so that every tool reads from memory.
  cat "$capture" > /dev/null
  read -r wall1 cpu1 <<< "$(scan_best 1 "$capture")"
  read -r wall2 cpu2 <<< "$(scan_best 2 "$capture")"
  cmp -s "$out/scan-1.json" "$out/scan-2.json" && same=yes || same=NO
  t1=$(now)
  { time tshark -r "$capture" -n "${tshark_keys[@]}" -Y "$(cat "$(tshark_filter_of "$name")")" -T fields -e frame.number > "$out/tshark.txt" 2> "$out/tshark.err"; } 2> "$out/tshark.time" \
    || { echo "tshark failed on $capture:" >&2; grep -v "^Running as" "$out/tshark.err" >&2; exit 2; }
  tshark_cpu=$(awk '{ printf "%.3f", $2 + $3 }' "$out/tshark.time")
  t2=$(now)
  if [ -n "$keylog" ]; then
    echo "n/a" > "$out/ngrep.txt"
  else
    ngrep -q -I "$capture" "$(cat "$out/ngrep.regex")" > "$out/ngrep.txt" 2>/dev/null || true
  fi
  t3=$(now)
  python3 - "$name" "$bytes" "$scanner_name" "$wall1" "$cpu1" "$wall2" "$cpu2" "$t1" "$t2" "$t3" "$out" "$runs" "$same" "$tshark_cpu" <<'PY'
import json, sys
name, bytes_, scanner = sys.argv[1], int(sys.argv[2]), sys.argv[3]
wall1, cpu1, wall2, cpu2, t1, t2, t3 = map(float, sys.argv[4:11])
out, runs, same, tshark_cpu = sys.argv[11], int(sys.argv[12]), sys.argv[13], float(sys.argv[14])
findings = json.load(open(f"{out}/scan-1.json"))["findings"]
sightings = sum(f["count"] for f in findings)
tshark_frames = sum(1 for _ in open(f"{out}/tshark.txt"))
ngrep_text = open(f"{out}/ngrep.txt", errors="replace").read()
ngrep_na = ngrep_text == "n/a\n"
ngrep_packets = sum(1 for l in ngrep_text.splitlines() if l.startswith("T "))
gib, mb = bytes_ / 2**30, bytes_ / 1e6
print(f"\n== {name}: {bytes_} bytes ({gib:.2f} GiB)")
print(f"{'tool':<26} {'wall s':>7} {'MB/s':>8} {'cpu s':>7} {'GiB/s/core':>10} {'vs 1 thread':>11}  result")
rows = [
    (f"{scanner} --threads 1", wall1, cpu1, f"{len(findings)} findings, {sightings} sightings"),
    (f"{scanner} --threads 2", wall2, cpu2, f"{wall1 / wall2:.2f}x faster than 1 thread; same report: {same}"),
    ("tshark", t2 - t1, tshark_cpu, f"{tshark_frames} frames matched; {tshark_cpu / cpu1:.1f}x the scanner's cpu s"),
]
if ngrep_na:
    tshark_row = rows.pop()
    rows.append(("tshark (key log)", tshark_row[1], tshark_row[2], tshark_row[3]))
else:
    rows.append(("ngrep", t3 - t2, None, f"{ngrep_packets} packets matched"))
for tool, wall, cpu, result in rows:
    per_core = f"{gib / cpu:10.2f}" if cpu else f"{'':10}"
    cpu_s = f"{cpu:7.2f}" if cpu else f"{'':7}"
    print(f"{tool:<26} {wall:7.2f} {mb / wall:8.1f} {cpu_s} {per_core} {wall / wall1:10.2f}x  {result}")
if ngrep_na:
    print(f"{'ngrep':<26} {'n/a (cannot decrypt)':>35}")
print(f"(scanner rows: best of {runs} runs)")
PY
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
