#!/usr/bin/env bash
# Side by side with lessor's own load generator (`lessor-perf load`, which perfdhcp's ceiling
# does not limit): lessor (journal sync group and none) and kea-dhcp4 (memfile, persist on,
# multi-threading on), DHCPv4 DORA as a relay on loopback.
#
#   perf/compare-load.sh [--seconds 10] [--runs 3] [--inflight 256] [--workers 1]
#                        [--servers "lessor-group lessor-none kea"] [--bin DIR]
#
# For every server: RUNS closed-loop runs (INFLIGHT exchanges outstanding) give its maximum
# DORA/s (the median), then RUNS open-loop runs at half that median give the latency there.
# Each run starts a fresh server with an empty state. Server on core 1 (cores 0-1 with
# --workers 2), generator on core 0. Each open-loop run of a lessor server is followed by one
# of the null responder (`lessor-perf null-responder`, which answers without any state) at
# the same rate: the latency floor the machine and the generator set at that moment, since a
# VM's floor moves from one minute to the next. Prints per run: DORA/s, drops, DORA
# p50/p99/p99.9, the server's CPU per DORA and the correctness check; then per server the
# medians, and the ratio of each lessor maximum to Kea's. `--servers null` alone gives the
# null responder's own maximum: the ceiling of the generator and the machine. `--bin DIR` takes
# lessor and lessor-perf from DIR instead of building them (to compare two builds: copy each
# build's target/release/{lessor,lessor-perf} aside and run the script once per copy).
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
cd "$(dirname "$0")/.."

. perf/lib.sh

seconds=10 runs=3 inflight=256 workers=1
servers="lessor-group lessor-none kea"
bin=""
parse_args "seconds runs inflight workers servers bin" "$@"
find_binaries
make_work lessor-load
cores=1; gen_pin=(taskset -c 0); [ "$workers" -gt 1 ] && cores=0-1 && gen_pin=(taskset -c 0-1)

start() { # server
  if [ "$1" = null ]; then
    taskset -c "$cores" "$bin/lessor-perf" null-responder --workers "$workers" > "$work/server.log" 2>&1 &
    pid=$!
  else
    start_server 4 "$1" "$cores"
  fi
  sleep 2
  kill -0 "$pid" || { cat "$work/server.log" >&2; exit 1; }
}
stop() { stop_server; }

run() { # server, then load arguments; prints "dora/s drops% p50 p99 p99.9 cpu_us violations"
  local server=$1; shift
  start "$server"
  "${gen_pin[@]}" "$bin/lessor-perf" load --duration "$seconds" --server-pid "$pid" \
    --json "$work/out.json" --quiet "$@" > /dev/null 2>&1 || true
  stop
  python3 - "$work/out.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
d = j["latency_us"]["dora"]
drops = j["discover_offer_drops"]["percent"] + j["request_ack_drops"]["percent"]
print(f'{j["achieved_dora_per_s"]:.0f} {drops:.3f} {d["p50"]:.0f} {d["p99"]:.0f} {d["p99_9"]:.0f} '
      f'{j.get("server_cpu_us_per_dora") or 0:.1f} {j["correctness"]["violations"]}')
PY
}

printf "%-13s %-6s %3s %9s %7s %8s %8s %8s %7s %4s\n" server mode run DORA/s drop% p50us p99us p99.9us cpu_us viol
declare -A max
for server in $servers; do
  : > "$work/closed"
  for r in $(seq 1 "$runs"); do
    line=$(run "$server" --inflight "$inflight")
    echo "$line" >> "$work/closed"
    printf "%-13s %-6s %3s %9s %7s %8s %8s %8s %7s %4s\n" "$server" closed "$r" $line
  done
  max[$server]=$(cut -d' ' -f1 "$work/closed" | median)
  half=$(( ${max[$server]} / 2 ))
  : > "$work/open"; : > "$work/floor"
  for r in $(seq 1 "$runs"); do
    line=$(run "$server" --rate "$half")
    echo "$line" >> "$work/open"
    printf "%-13s %-6s %3s %9s %7s %8s %8s %8s %7s %4s\n" "$server" "$half" "$r" $line
    if [ "${server%%-*}" = lessor ]; then
      line=$(run null --rate "$half")
      echo "$line" >> "$work/floor"
      printf "%-13s %-6s %3s %9s %7s %8s %8s %8s %7s %4s\n" "(null)" "$half" "$r" $line
    fi
  done
  floor=""
  if [ -s "$work/floor" ]; then
    floor="; null responder at the same rate: p99 $(cut -d' ' -f4 "$work/floor" | median) us, p99.9 $(cut -d' ' -f5 "$work/floor" | median) us"
  fi
  echo "$server: max ${max[$server]} DORA/s (median of $runs); at $half/s: p99 $(cut -d' ' -f4 "$work/open" | median) us, p99.9 $(cut -d' ' -f5 "$work/open" | median) us (medians)$floor; CPU $(cut -d' ' -f6 "$work/closed" | median) us/DORA at the max"
done
if [ -n "${max[kea]:-}" ]; then
  for server in $servers; do
    [ "$server" = kea ] && continue
    echo "$server / kea: $(python3 -c "print(f'{${max[$server]} / ${max[kea]}:.1f}x')")"
  done
fi
