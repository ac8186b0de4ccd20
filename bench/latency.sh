#!/usr/bin/env bash
# Latency near users, measured (issue 10, item 5). Each site runs as `sovereign serve --region`
# in its own network namespace, with the directory on etcd; a phone in Mumbai and one in Kuala
# Lumpur each have their own namespace. Every path (phone -> site, site -> site, and the
# operator's `sovereign migrate` -> site) goes through bench's delay-proxy with that city pair's
# round-trip time (this kernel has no netem), and the Malaysian phone's paths also with a
# bandwidth limit. Then:
#   1. an Indian user homed in cn-beijing runs the phone's 2014 procedure (`sovereign device
#      run`); the user is moved by the 2014 plan's steps (messaging, backup, account) to
#      sg-singapore while a second phone of the same user keeps working; the procedure runs
#      again; the same to in-mumbai; a table of per-request p50/p99, the procedure's time and the
#      saving per request at each stage;
#   2. a Malaysian user homed in cn-beijing syncs a camera roll, is moved to sg-singapore, and
#      syncs another roll of the same size; the speed-up.
#
# Needs root (ip netns), etcd (Debian etcd-server) and curl. Not part of CI.
# Usage: bench/latency.sh        (env: see the defaults below; RTT_<A>_<B> in ms, cities
#        BJS SIN MUM PDX GRU KUL in alphabetical order, e.g. RTT_BJS_MUM=280)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PROFILE=${PROFILE:-release}     # or debug, to reuse a debug build
PHOTOS=${PHOTOS:-200}           # photos per camera roll
PHOTO_MIN_BYTES=${PHOTO_MIN_BYTES:-2097152}
PHOTO_MAX_BYTES=${PHOTO_MAX_BYTES:-5242880}
PHOTO_PARALLEL=${PHOTO_PARALLEL:-4}
RUNS=${RUNS:-5}                 # procedure runs per stage
RATE_KUL_BJS_MBIT=${RATE_KUL_BJS_MBIT:-20}   # assumption: Malaysia to Beijing, per user
RATE_KUL_SIN_MBIT=${RATE_KUL_SIN_MBIT:-50}   # assumption: Malaysia to Singapore, per user
RTT_LOCAL=${RTT_LOCAL:-2}                    # two hosts in one city

# Round-trip times in ms between the cities, as published by WonderNetwork's global ping
# statistics (wondernetwork.com/pings) as recalled when this script was written, NOT re-fetched
# (this machine cannot reach the web): see README.md, Performance. Each is overridable.
declare -A RTT_DEFAULT=(
  [BJS_MUM]=280 [MUM_SIN]=58 [MUM_PDX]=230 [GRU_MUM]=310
  [BJS_SIN]=90 [BJS_PDX]=170 [BJS_GRU]=320 [PDX_SIN]=165 [GRU_SIN]=330 [GRU_PDX]=175
  [BJS_KUL]=100 [KUL_SIN]=10 [KUL_MUM]=65 [KUL_PDX]=180 [GRU_KUL]=340
)
rtt() { # rtt CITY CITY -> ms
  local a=$1 b=$2
  if [[ $a == "$b" ]]; then echo "$RTT_LOCAL"; return; fi
  if [[ $a > $b ]]; then local t=$a; a=$b; b=$t; fi
  local var="RTT_${a}_${b}"
  echo "${!var:-${RTT_DEFAULT[${a}_${b}]:?no RTT for $a-$b}}"
}

REGIONS=(cn-beijing sg-singapore in-mumbai us-oregon br-saopaulo)
declare -A CITY=([cn-beijing]=BJS [sg-singapore]=SIN [in-mumbai]=MUM [us-oregon]=PDX
  [br-saopaulo]=GRU [phone-in]=MUM [phone-my]=KUL)
declare -A PORT=([cn-beijing]=8441 [us-oregon]=8442 [sg-singapore]=8444 [in-mumbai]=8445
  [br-saopaulo]=8446)
# Namespace index i: its link is 10.77.i.0/24, .1 in the WAN namespace, .2 inside.
NODES=(phone-in phone-my "${REGIONS[@]}")
declare -A IDX
for i in "${!NODES[@]}"; do IDX[${NODES[$i]}]=$((i + 1)); done
WAN=lt-wan
ns() { echo "lt-$1"; }
host() { echo "$1.sovereign.test"; }

IN_PHONE="+91 98765 43210"      # config/phone.toml's owner
MY_PHONE="+60 12 345 6789"

for tool in ip etcd curl protoc; do
  command -v "$tool" >/dev/null || { echo "latency.sh needs $tool (apt-get install iproute2 etcd-server curl protobuf-compiler)" >&2; exit 2; }
done
[[ $(id -u) == 0 ]] || { echo "latency.sh needs root (network namespaces)" >&2; exit 2; }

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ $PROFILE == release ]]; then
  cargo build --quiet --release -p sovereign -p sovereign-bench --features sovereign/etcd --bin sovereign --bin delay-proxy --bin latency
else
  cargo build --quiet -p sovereign -p sovereign-bench --features sovereign/etcd --bin sovereign --bin delay-proxy --bin latency
fi
BIN=$CARGO_TARGET_DIR/$PROFILE
SOV=$BIN/sovereign

DIR=$(mktemp -d /tmp/sovereign-latency.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for node in "${NODES[@]}" wan; do
    ip netns del "$(ns "$node")" 2>/dev/null || true
    rm -rf "/etc/netns/$(ns "$node")"
  done
  echo "logs and data kept in $DIR" >&2
}
trap cleanup EXIT
in_ns() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }

# --- the network: one namespace per site and phone, each linked to the WAN namespace ----------
ip netns add $WAN
ip -n $WAN link set lo up
for node in "${NODES[@]}"; do
  i=${IDX[$node]}
  ip netns add "$(ns "$node")"
  ip -n "$(ns "$node")" link set lo up
  ip link add "ltw$i" netns $WAN type veth peer name "ltn$i" netns "$(ns "$node")"
  ip -n $WAN addr add "10.77.$i.1/24" dev "ltw$i"
  ip -n $WAN link set "ltw$i" up
  ip -n "$(ns "$node")" addr add "10.77.$i.2/24" dev "ltn$i"
  ip -n "$(ns "$node")" link set "ltn$i" up
done

# Inside namespace X, site R's name resolves to X's own end of the WAN, where a proxy with the
# X-R delay forwards to R (a site reaches itself directly).
ROUTES=$DIR/routes.txt
: > "$ROUTES"
for node in "${NODES[@]}"; do
  i=${IDX[$node]}
  mkdir -p "/etc/netns/$(ns "$node")"
  { echo "127.0.0.1 localhost"; echo "::1 localhost"; } > "/etc/netns/$(ns "$node")/hosts"
  for region in "${REGIONS[@]}"; do
    j=${IDX[$region]}
    if [[ $node == "$region" ]]; then
      echo "10.77.$j.2 $(host "$region")" >> "/etc/netns/$(ns "$node")/hosts"
      continue
    fi
    echo "10.77.$i.1 $(host "$region")" >> "/etc/netns/$(ns "$node")/hosts"
    line="listen=10.77.$i.1:${PORT[$region]} target=10.77.$j.2:${PORT[$region]} rtt_ms=$(rtt "${CITY[$node]}" "${CITY[$region]}")"
    if [[ $node == phone-my ]]; then
      case $region in
        cn-beijing) line+=" rate_mbit=$RATE_KUL_BJS_MBIT" ;;
        sg-singapore) line+=" rate_mbit=$RATE_KUL_SIN_MBIT" ;;
      esac
    fi
    echo "$line # $node -> $region" >> "$ROUTES"
  done
done
ip netns exec $WAN "$BIN/delay-proxy" --routes "$ROUTES" > "$DIR/proxy.log" 2>&1 &
PIDS+=($!)

# --- etcd, in the WAN namespace, reachable from every site on its own link ---------------------
client_urls=""
for region in "${REGIONS[@]}"; do client_urls+="http://10.77.${IDX[$region]}.1:2379,"; done
ip netns exec $WAN etcd --name latency --data-dir "$DIR/etcd" \
  --listen-client-urls "${client_urls%,}" --advertise-client-urls "http://10.77.${IDX[cn-beijing]}.1:2379" \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster latency=http://127.0.0.1:2380 > "$DIR/etcd.log" 2>&1 &
PIDS+=($!)
directory() { echo "etcd://10.77.${IDX[$1]}.1:2379/sovereign"; }

# --- the sites: the multi-host procedure of README.md ------------------------------------------
CONFIG=$DIR/config
mkdir -p "$CONFIG"
cp config/*.toml "$CONFIG/"
# The five regions of the bench (us-california is left out), and the 2014 situation: Indian and
# Malaysian numbers homed in cn-beijing, allowed to move to Singapore (and Indians to Mumbai).
awk 'BEGIN{RS="";ORS="\n\n"} !/us-california/' config/regions.toml > "$CONFIG/regions.toml"
sed -i -e 's/^IN = .*/IN = ["cn-beijing", "sg-singapore", "in-mumbai"]/' \
  -e 's/^MY = .*/MY = ["cn-beijing", "sg-singapore"]/' "$CONFIG/residency.toml"
head -c 32 /dev/urandom > "$DIR/phone-index.key"
: > "$DIR/federation.toml"
: > "$DIR/ca.pem"
for region in "${REGIONS[@]}"; do
  site=$DIR/sites/$region
  mkdir -p "$site/keys"
  install -m 0600 "$DIR/phone-index.key" "$site/keys/phone-index.key"
  "$SOV" federation publish --data-dir "$site" --region "$region" \
    --url "https://$(host "$region"):${PORT[$region]}" >> "$DIR/federation.toml"
  cat "$site/tls/ca.pem" >> "$DIR/ca.pem"
done
for region in "${REGIONS[@]}"; do
  in_ns "$region" "$SOV" serve --data-dir "$DIR/sites/$region" --region "$region" \
    --listen "10.77.${IDX[$region]}.2:${PORT[$region]}" --federation "$DIR/federation.toml" \
    --directory "$(directory "$region")" --config "$CONFIG" --log warn \
    > "$DIR/$region.log" 2>&1 &
  PIDS+=($!)
done
for region in "${REGIONS[@]}"; do
  for _ in $(seq 100); do
    in_ns phone-in curl -sf --cacert "$DIR/sites/$region/tls/ca.pem" "https://$(host "$region"):${PORT[$region]}/healthz" >/dev/null && break
    sleep 0.3
  done
  in_ns phone-in curl -sf --cacert "$DIR/sites/$region/tls/ca.pem" "https://$(host "$region"):${PORT[$region]}/healthz" >/dev/null \
    || { echo "$region did not start; see $DIR/$region.log" >&2; cat "$DIR/$region.log" >&2; exit 1; }
done
echo "five sites up; the proxy's routes are in $ROUTES" >&2

url() { echo "https://$(host "$1"):${PORT[$1]}"; }
now() { date +%s.%N; }
# The operator runs `sovereign migrate` on the source site's host, with only that site's data
# directory: the copy goes to the target over the federation, through the WAN between them.
migrate() { # migrate FROM TO USERS_FILE
  for services in messaging backup ""; do
    in_ns "$1" "$SOV" migrate --region "$1" --data-dir "$DIR/sites/$1" \
      --federation "$DIR/federation.toml" --config "$CONFIG" --from "$1" --to "$2" \
      --users "$3" --directory "$(directory "$1")" ${services:+--services "$services"} >&2
  done
}
device_run() { # device_run STAGE REGION [flags]: RUNS runs of the procedure, a fresh phone each
  local stage=$1 region=$2; shift 2
  local runs=$RUNS t0
  [[ $stage == signup ]] && runs=1
  STAGE_TIMINGS=""; STAGE_SECS=""
  for run in $(seq "$runs"); do
    t0=$(now)
    in_ns phone-in "$SOV" device run --profile config/phone.toml --behaviour sovereign \
      --cloud "$(url "$region")" --ca "$DIR/ca.pem" --timings "$DIR/timings-$stage-$run.json" \
      --format json "$@" > "$DIR/device-$stage-$run.json"
    STAGE_TIMINGS+="$DIR/timings-$stage-$run.json,"
    STAGE_SECS+="$(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.3f", a - b }'),"
  done
  echo "${STAGE_TIMINGS%,}:${STAGE_SECS%,}" > "$DIR/stage-$stage"
}
phone_loop_start() { # phone_loop_start STAGE REGION
  rm -f "$DIR/stop-$1"
  in_ns phone-in "$BIN/latency" loop --cloud "$(url "$2")" --ca "$DIR/ca.pem" --phone "$IN_PHONE" \
    --stop-file "$DIR/stop-$1" --out "$DIR/loop-$1.json" > "$DIR/loop-$1.log" 2>&1 &
  LOOP_PID=$!
  PIDS+=($LOOP_PID)
  sleep 3
}
phone_loop_stop() { sleep 3; touch "$DIR/stop-$1"; wait "$LOOP_PID"; }

# --- 1. the Indian user --------------------------------------------------------------------------
echo "Indian user: sign-up in cn-beijing" >&2
device_run signup cn-beijing --sms-outbox "$DIR/sites/cn-beijing/sms-outbox.jsonl"
echo "+919876543210" > "$DIR/users-in.txt"
echo "stage 1: homed in cn-beijing" >&2
device_run beijing cn-beijing --existing-account
echo "moving to sg-singapore while the phone keeps working" >&2
phone_loop_start singapore cn-beijing
migrate cn-beijing sg-singapore "$DIR/users-in.txt"
phone_loop_stop singapore
device_run singapore sg-singapore --existing-account
echo "moving to in-mumbai while the phone keeps working" >&2
phone_loop_start mumbai sg-singapore
migrate sg-singapore in-mumbai "$DIR/users-in.txt"
phone_loop_stop mumbai
device_run mumbai in-mumbai --existing-account

# --- 2. the Malaysian user's photos --------------------------------------------------------------
photos() { # photos NAME REGION PREFIX [flags]
  local name=$1 region=$2 prefix=$3; shift 3
  echo "Malaysian user: syncing $PHOTOS photos homed in $region" >&2
  in_ns phone-my "$BIN/latency" photos --cloud "$(url "$region")" --ca "$DIR/ca.pem" \
    --phone "$MY_PHONE" --sms-outbox "$DIR/sites/cn-beijing/sms-outbox.jsonl" \
    --count "$PHOTOS" --min-bytes "$PHOTO_MIN_BYTES" --max-bytes "$PHOTO_MAX_BYTES" \
    --parallel "$PHOTO_PARALLEL" --prefix "$prefix" --out "$DIR/photos-$name.json" "$@" >&2
}
photos beijing cn-beijing roll1
echo "+60123456789" > "$DIR/users-my.txt"
migrate cn-beijing sg-singapore "$DIR/users-my.txt"
photos singapore sg-singapore roll2 --existing-account

echo
echo "RTT ms: Mumbai-Beijing $(rtt MUM BJS), Mumbai-Singapore $(rtt MUM SIN), Mumbai-Oregon $(rtt MUM PDX), Mumbai-São Paulo $(rtt MUM GRU), Mumbai-Mumbai $(rtt MUM MUM), Beijing-Singapore $(rtt BJS SIN), Kuala Lumpur-Beijing $(rtt KUL BJS), Kuala Lumpur-Singapore $(rtt KUL SIN); Malaysian phone to Beijing $RATE_KUL_BJS_MBIT Mbit/s, to Singapore $RATE_KUL_SIN_MBIT Mbit/s; build $PROFILE"
echo
"$BIN/latency" report \
  --stage "homed in cn-beijing=$(cat "$DIR/stage-beijing")" \
  --stage "homed in sg-singapore=$(cat "$DIR/stage-singapore"):$DIR/loop-singapore.json" \
  --stage "homed in in-mumbai=$(cat "$DIR/stage-mumbai"):$DIR/loop-mumbai.json" \
  --photos "cn-beijing=$DIR/photos-beijing.json" --photos "sg-singapore=$DIR/photos-singapore.json"
