#!/usr/bin/env bash
# The pause a pool change causes: lessor (`sync: group`) holding LEASES leases takes a
# `config-set` that shrinks its pool by one address while DHCPv4 load runs at RATE DORA/s;
# the engines are rebuilt and every lease moves over while the workers wait (docs/RELOAD.md).
#
#   perf/reload-pause.sh [--leases "100000 1000000"] [--runs 3] [--rate 10000]
#                        [--workers 1] [--bin DIR]
#
# Prints per run the pause the server reports (`pause-seconds`), the drops and the p99 of the
# load that ran through it; then per size the median pause. Server on core 1 (0-1 with
# --workers 2), generator on core 0.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
cd "$(dirname "$0")/.."

. perf/lib.sh

leases="100000 1000000" runs=3 rate=10000 workers=1
bin=""
parse_args "leases runs rate workers bin" "$@"
find_binaries
make_work lessor-pause
api=127.0.0.1:8067
cores=1; [ "$workers" -gt 1 ] && cores=0-1

api_call() { # JSON body; prints the answer
  curl -s -H 'content-type: application/json' -d "$1" "http://$api/"
}

run() { # leases; prints "pause_s drops% p99us"
  local n=$1
  rm -rf "$work/state"; mkdir -p "$work/state"
  { lessor_config 4 group; echo "control: { listen: \"$api\" }"; } > "$work/lessor.yaml"
  RUST_LOG=warn taskset -c "$cores" "$bin/lessor" --config "$work/lessor.yaml" > "$work/server.log" 2>&1 &
  pid=$!
  sleep 2
  kill -0 "$pid" || { cat "$work/server.log" >&2; exit 1; }
  taskset -c 0 "$bin/lessor-perf" load --duration 3600 --clients "$n" --stop-after "$n" \
    --quiet --json "$work/prefill.json" > /dev/null 2>&1 || true
  # The running document with the pool one address shorter.
  api_call '{"command":"config-get","service":["dhcp4"]}' | python3 -c '
import json, sys
doc = json.load(sys.stdin)[0]["arguments"]
doc["lessor"]["v4"]["subnets"][0]["pools"] = ["10.0.0.1-10.255.255.253"]
print(json.dumps({"command": "config-set", "service": ["dhcp4"], "arguments": doc}))' > "$work/set.json"
  taskset -c 0 "$bin/lessor-perf" load --duration 6 --rate "$rate" --first-client "$n" \
    --json "$work/out.json" --quiet > /dev/null 2>&1 &
  local gen=$!
  sleep 3
  api_call "$(cat "$work/set.json")" > "$work/answer.json"
  wait "$gen" || true
  stop_server
  python3 - "$work/answer.json" "$work/out.json" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))[0]
if a["result"] != 0:
    sys.exit(f"config-set failed: {a}")
j = json.load(open(sys.argv[2]))
drops = j["discover_offer_drops"]["percent"] + j["request_ack_drops"]["percent"]
print(f'{a["arguments"]["pause-seconds"]:.4f} {drops:.3f} {j["latency_us"]["dora"]["p99"]:.0f}')
PY
}

fmt="%-9s %3s %9s %7s %8s\n"
printf "$fmt" leases run pause_s drop% p99us
for n in $leases; do
  : > "$work/pauses"
  for r in $(seq 1 "$runs"); do
    line=$(run "$n")
    echo "$line" >> "$work/pauses"
    printf "$fmt" "$n" "$r" $line
  done
  echo "$n leases: pause $(cut -d' ' -f1 "$work/pauses" | median) s (median of $runs) under $rate DORA/s"
done
