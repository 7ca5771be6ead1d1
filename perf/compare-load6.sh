#!/usr/bin/env bash
# DHCPv6 side by side with lessor's generator: `lessor-perf load6` (one relay on ::1, closed
# loop) against lessor (`journal.sync: group`) and kea-dhcp6 (memfile persist on,
# multi-threading on), a fresh server per run, server on core 1 and generator on core 0.
#
#   perf/compare-load6.sh [--runs 3] [--seconds 10] [--inflight 256] [--ia both] [--workers 1]
#                         [--servers "lessor kea"] [--bin DIR]
#
# With --workers 2, lessor runs two workers (steered by DUID) and Kea two threads as always,
# and server and generator share cores 0-1.
#
# Prints per run exchanges/s, drops, the server's CPU per exchange and the correctness check,
# then the medians and the ratio lessor / Kea. `--bin DIR` takes lessor and lessor-perf from DIR
# instead of building them, as in compare-load.sh (to compare two builds, run once per copy).
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
cd "$(dirname "$0")/.."
runs=3 seconds=10 inflight=256 ia=both workers=1 servers="lessor kea" bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --inflight) inflight=$2; shift 2 ;;
    --ia) ia=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --servers) servers=$2; shift 2 ;;
    --bin) bin=$(cd "$2" && pwd); shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  cargo build --release -q -p lessor-server -p lessor-perf
  bin=$PWD/target/release
fi
cores=1; gen_pin=(taskset -c 0); [ "$workers" -gt 1 ] && cores=0-1 && gen_pin=(taskset -c 0-1)
work=$(mktemp -d /var/tmp/lessor-load6.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

start() { # lessor | kea
  rm -rf "$work/state" "$work/kea"; mkdir -p "$work/state" "$work/kea" /run/kea
  if [ "$1" = lessor ]; then
    printf 'port: 6767\nstate_dir: %s\nworkers: %s\njournal: { sync: group }\nv6:\n  port: 6547\n  subnets:\n    - subnet: fd00:231::/64\n      relays: ["fd00:231::1", "::1"]\n      pools: ["fd00:231::1:0-fd00:231::ff:ffff"]\n      pd_pools: [ { prefix: "fd00:2300::/32", delegated_len: 56 } ]\n' \
      "$work/state" "$workers" > "$work/lessor.yaml"
    RUST_LOG=warn taskset -c "$cores" "$bin/lessor" --config "$work/lessor.yaml" > "$work/server.log" 2>&1 &
  else
    printf '{ "Dhcp6": { "data-directory": "%s/kea", "interfaces-config": { "interfaces": [ "lo/::1" ] },
  "lease-database": { "type": "memfile", "persist": true, "name": "%s/kea/leases6.csv" },
  "multi-threading": { "enable-multi-threading": true, "thread-pool-size": 2, "packet-queue-size": 64 },
  "preferred-lifetime": 3000, "valid-lifetime": 4000,
  "subnet6": [ { "id": 1, "subnet": "fd00:231::/64",
                 "pools": [ { "pool": "fd00:231::1:0 - fd00:231::ff:ffff" } ],
                 "pd-pools": [ { "prefix": "fd00:2300::", "prefix-len": 32, "delegated-len": 56 } ],
                 "relay": { "ip-addresses": [ "fd00:231::1", "::1" ] } } ],
  "loggers": [ { "name": "kea-dhcp6", "output_options": [ { "output": "%s/kea/kea.log" } ], "severity": "WARN" } ] } }\n' \
      "$work" "$work" "$work" > "$work/kea6.json"
    taskset -c "$cores" kea-dhcp6 -c "$work/kea6.json" -p 6547 -P 6548 > "$work/server.log" 2>&1 &
  fi
  pid=$!
  sleep 2
  kill -0 "$pid" || { cat "$work/server.log" >&2; exit 1; }
}

declare -A med
printf "%-7s %3s %12s %8s %8s %10s %5s\n" server run exchanges/s SA%drop RR%drop cpu_us viol
for server in $servers; do
  : > "$work/rates"
  for r in $(seq 1 "$runs"); do
    start "$server"
    "${gen_pin[@]}" "$bin/lessor-perf" load6 --ia "$ia" --inflight "$inflight" --duration "$seconds" \
      --server-pid "$pid" --json "$work/out.json" --quiet > /dev/null 2>&1 || true
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    line=$(python3 - "$work/out.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
cpu = j.get("server_cpu_us_per_exchange") or 0
print(f'{j["achieved_per_s"]:.0f} {j["solicit_advertise_drops"]["percent"]:.2f} '
      f'{j["request_reply_drops"]["percent"]:.2f} {cpu:.1f} {j["correctness"]["violations"]}')
PY
)
    echo "${line%% *}" >> "$work/rates"
    printf "%-7s %3s %12s %8s %8s %10s %5s\n" "$server" "$r" $line
  done
  med[$server]=$(sort -n "$work/rates" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
  echo "$server: median ${med[$server]} exchanges/s"
done
if [ -n "${med[lessor]:-}" ] && [ -n "${med[kea]:-}" ]; then
  python3 -c "print(f'lessor / kea: {${med[lessor]} / ${med[kea]}:.1f}x')"
fi
