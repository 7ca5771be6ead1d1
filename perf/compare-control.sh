#!/usr/bin/env bash
# What the control API costs DHCP: lessor (`sync: group`) with the control server off, against
# lessor with a Prometheus scrape of /metrics every second and `lease4-get-all` of every lease
# in a loop, DHCPv4 DORA as a relay on loopback (`lessor-perf load`).
#
#   perf/compare-control.sh [--seconds 10] [--runs 3] [--prefill 1000000] [--modes "off busy"]
#                           [--bin DIR]
#
# Each run starts a fresh server, fills it with PREFILL leases (closed loop, clients
# 0..PREFILL), then measures with new clients: closed loop for the maximum, then open loop at
# half the median maximum of the first mode for the drops. The modes alternate within each
# round, so that both see the same minutes of a noisy machine. `busy` counts the listings and
# scrapes that completed during the measured run and their median time. Server on core 1,
# generator on core 0, the API callers unpinned at nice 19 (they stand for callers on other
# machines: they take no core from the server or the generator).
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
cd "$(dirname "$0")/.."

. perf/lib.sh

seconds=10 runs=3 prefill=1000000 modes="off busy" workers=1
bin=""
parse_args "seconds runs prefill modes bin" "$@"
find_binaries
make_work lessor-control
api=127.0.0.1:8067
callers=()

start() { # mode
  rm -rf "$work/state"; mkdir -p "$work/state"
  lessor_config 4 group > "$work/lessor.yaml"
  if [ "$1" = off ]; then
    echo "control: off" >> "$work/lessor.yaml"
  else
    echo "control: { listen: \"$api\" }" >> "$work/lessor.yaml"
  fi
  RUST_LOG=warn taskset -c 1 "$bin/lessor" --config "$work/lessor.yaml" > "$work/server.log" 2>&1 &
  pid=$!
  sleep 2
  kill -0 "$pid" || { cat "$work/server.log" >&2; exit 1; }
  taskset -c 0 "$bin/lessor-perf" load --duration 3600 --clients "$prefill" --inflight 256 \
    --quiet --json "$work/prefill.json" --stop-after "$prefill" > /dev/null 2>&1 || true
}

# Starts the API callers: a scrape every second, lease4-get-all back to back; each logs the
# seconds every call took.
start_callers() {
  : > "$work/scrapes"; : > "$work/listings"
  ( while :; do
      nice -n 19 curl -s -o /dev/null -w '%{time_total}\n' "http://$api/metrics" >> "$work/scrapes" || true
      sleep 1
    done ) &
  callers+=($!)
  ( while :; do
      nice -n 19 curl -s -o /dev/null -w '%{time_total}\n' -H 'content-type: application/json' \
        -d '{"command":"lease4-get-all","service":["dhcp4"]}' "http://$api/" >> "$work/listings" || true
    done ) &
  callers+=($!)
}
stop_callers() {
  [ ${#callers[@]} -gt 0 ] && kill "${callers[@]}" 2>/dev/null && wait "${callers[@]}" 2>/dev/null
  callers=()
}

run() { # mode, then load arguments; prints "dora/s drops% p99 listings listing_s scrapes scrape_s"
  local mode=$1; shift
  start "$mode"
  [ "$mode" = busy ] && start_callers
  taskset -c 0 "$bin/lessor-perf" load --duration "$seconds" --server-pid "$pid" \
    --first-client "$prefill" --json "$work/out.json" --quiet "$@" > /dev/null 2>&1 || true
  stop_callers
  stop_server
  touch "$work/listings" "$work/scrapes"
  python3 - "$work/out.json" "$work/listings" "$work/scrapes" "$mode" <<'PY'
import json, statistics, sys
j = json.load(open(sys.argv[1]))
drops = j["discover_offer_drops"]["percent"] + j["request_ack_drops"]["percent"]
def calls(path):
    t = [float(x) for x in open(path).read().split()] if sys.argv[4] == "busy" else []
    return f'{len(t)} {statistics.median(t) if t else 0:.3f}'
print(f'{j["achieved_dora_per_s"]:.0f} {drops:.3f} {j["latency_us"]["dora"]["p99"]:.0f} '
      f'{calls(sys.argv[2])} {calls(sys.argv[3])}')
PY
}
cleanup_all() { stop_callers; cleanup; }
trap cleanup_all EXIT

fmt="%-5s %-7s %3s %9s %7s %8s %9s %10s %8s %9s\n"
printf "$fmt" mode load run DORA/s drop% p99us listings listing_s scrapes scrape_s
declare -A closed open
for r in $(seq 1 "$runs"); do
  for mode in $modes; do
    line=$(run "$mode" --inflight 256)
    closed[$mode]+="$line"$'\n'
    printf "$fmt" "$mode" closed "$r" $line
  done
done
first=${modes%% *}
half=$(( $(printf '%s' "${closed[$first]}" | cut -d' ' -f1 | median) / 2 ))
for r in $(seq 1 "$runs"); do
  for mode in $modes; do
    line=$(run "$mode" --rate "$half")
    open[$mode]+="$line"$'\n'
    printf "$fmt" "$mode" "$half" "$r" $line
  done
done
for mode in $modes; do
  max=$(printf '%s' "${closed[$mode]}" | cut -d' ' -f1 | median)
  drops=$(printf '%s' "${open[$mode]}" | cut -d' ' -f2 | median)
  echo "$mode: max $max DORA/s (median of $runs); at $half/s: drops $drops% (median)"
done
