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
. perf/lib.sh
runs=3 seconds=10 inflight=256 ia=both workers=1 servers="lessor kea" bin=""
parse_args "runs seconds inflight ia workers servers bin" "$@"
find_binaries
cores=1; gen_pin=(taskset -c 0); [ "$workers" -gt 1 ] && cores=0-1 && gen_pin=(taskset -c 0-1)
make_work lessor-load6

start() { # lessor | kea
  if [ "$1" = lessor ]; then start_server 6 lessor-group "$cores"; else start_server 6 kea "$cores"; fi
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
    stop_server
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
  med[$server]=$(median < "$work/rates")
  echo "$server: median ${med[$server]} exchanges/s"
done
if [ -n "${med[lessor]:-}" ] && [ -n "${med[kea]:-}" ]; then
  python3 -c "print(f'lessor / kea: {${med[lessor]} / ${med[kea]}:.1f}x')"
fi
