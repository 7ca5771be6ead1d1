#!/usr/bin/env bash
# Side by side: Kea's perfdhcp at stepped rates against lessor (journal sync group and none) and
# kea-dhcp4 (memfile, persist on, multi-threading on), on loopback, per ../shared/BENCHMARKING.md.
#
#   perf/compare-perfdhcp.sh [--rates "2000 4000 8000"] [--seconds 10] [--runs 3]
#                            [--servers "lessor-group lessor-none kea"] [--workers 1]
#                            [--json FILE]
#
# For every server, rate and run it prints the DISCOVER-OFFER and REQUEST-ACK drop ratios,
# ACKs/s, perfdhcp's average REQUEST-ACK delay and the server's CPU time per exchange (utime +
# stime from /proc/PID/stat, per ACK, i.e. per 4-way exchange). Then, per server, the highest rate
# whose median run has both drop ratios under 1%, and the ratio lessor/Kea of those rates.
# perfdhcp runs on core 0 and the server on core 1 (taskset); with --workers 2 the server gets
# both cores and competes with perfdhcp: report both layouts.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
cd "$(dirname "$0")/.."

rates="2000 4000 6000 8000 12000 16000 20000 25000"
seconds=10
runs=3
servers="lessor-group lessor-none kea"
workers=1
json=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rates) rates=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --servers) servers=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

for tool in perfdhcp taskset; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install kea-admin util-linux)" >&2; exit 1; }
done
cargo build --release -q -p lessor-server
lessor=$PWD/target/release/lessor

work=$(mktemp -d /var/tmp/lessor-compare.XXXXXX)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

server_cores=1
[ "$workers" -gt 1 ] && server_cores=0-1

start_server() { # name
  local name=$1
  rm -rf "$work/state" "$work/kea"; mkdir -p "$work/state" "$work/kea"
  case "$name" in
    lessor-*)
      local sync=${name#lessor-}
      cat > "$work/lessor.yaml" <<EOF
port: 6767
state_dir: $work/state
workers: $workers
journal: { sync: $sync }
v4:
  lease_time: 4000
  subnets:
    - subnet: 10.0.0.0/8
      relays: [127.0.0.1]
      pools: ["10.0.0.1-10.255.255.254"]
EOF
      RUST_LOG=warn taskset -c "$server_cores" "$lessor" --config "$work/lessor.yaml" > "$work/server.log" 2>&1 &
      server_pid=$!
      ;;
    kea)
      command -v kea-dhcp4 >/dev/null || { echo "kea-dhcp4 is missing (apt-get install kea-dhcp4-server)" >&2; exit 1; }
      mkdir -p /run/kea /var/run/kea
      cat > "$work/kea.json" <<EOF
{ "Dhcp4": {
  "interfaces-config": { "interfaces": [ "lo" ], "dhcp-socket-type": "udp" },
  "lease-database": { "type": "memfile", "persist": true, "name": "$work/kea/leases4.csv" },
  "multi-threading": { "enable-multi-threading": true, "thread-pool-size": 2, "packet-queue-size": 64 },
  "valid-lifetime": 4000,
  "subnet4": [ { "id": 1, "subnet": "10.0.0.0/8",
                 "pools": [ { "pool": "10.0.0.1 - 10.255.255.254" } ],
                 "relay": { "ip-addresses": [ "127.0.0.1" ] } } ] } }
EOF
      taskset -c "$server_cores" kea-dhcp4 -c "$work/kea.json" -p 6767 -P 6768 > "$work/server.log" 2>&1 &
      server_pid=$!
      ;;
    *) echo "unknown server $name" >&2; exit 2 ;;
  esac
  # Ready when a short perfdhcp run gets an answer.
  for _ in $(seq 1 50); do
    # (perfdhcp's exit status is 3 for such a short run even when it got its answer)
    perfdhcp -4 -l 127.0.0.1 -N 6767 -L 6768 -R 10 -n 1 -g single 127.0.0.1 > "$work/probe.out" 2>&1 || true
    if grep -q "received packets: [1-9]" "$work/probe.out"; then return 0; fi
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "$name did not answer" >&2; cat "$work/server.log" >&2; exit 1
}

stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

cpu_ticks() { # utime + stime of the server, in clock ticks
  awk '{ print $14 + $15 }' "/proc/$server_pid/stat"
}

hz=$(getconf CLK_TCK)
results="$work/results.tsv"
printf "server\trate\trun\tdo_drop_pct\tra_drop_pct\tacks_per_s\tra_avg_ms\tcpu_us_per_exchange\n" > "$results"
printf "%-13s %6s %3s %9s %9s %9s %9s %10s\n" server rate run "DO drop%" "RA drop%" "ACK/s" "RA ms" "CPU us/ex"
for server in $servers; do
  for rate in $rates; do
    for run in $(seq 1 "$runs"); do
      start_server "$server"
      t0=$(cpu_ticks)
      out=$(taskset -c 0 perfdhcp -4 -l 127.0.0.1 -N 6767 -L 6768 -R 10000000 -r "$rate" -p "$seconds" -g single 127.0.0.1 2>&1 || true)
      t1=$(cpu_ticks)
      stop_server
      # perfdhcp prints a block per exchange: DISCOVER-OFFER first, then REQUEST-ACK.
      line=$(awk -v sec="$seconds" -v cpu=$((t1 - t0)) -v hz="$hz" '
        /drops ratio:/ { gsub("%", "", $3); d[++n] = $3 }
        /received packets:/ { r[++m] = $3 }
        /avg delay:/ { a[++k] = $3 }
        END {
          acks = r[2] + 0
          us = acks > 0 ? cpu / hz * 1e6 / acks : 0
          printf "%s\t%s\t%.0f\t%s\t%.1f", d[1], d[2], acks / sec, a[2], us
        }' <<< "$out")
      printf "%s\t%s\t%s\t%s\n" "$server" "$rate" "$run" "$line" >> "$results"
      IFS=$'\t' read -r dod rad aps ams cpu <<< "$line"
      printf "%-13s %6s %3s %9s %9s %9s %9s %10s\n" "$server" "$rate" "$run" "$dod" "$rad" "$aps" "$ams" "$cpu"
    done
  done
done

echo
echo "Highest rate whose median run keeps both drop ratios under 1%:"
awk -F'\t' 'NR > 1 {
    key = $1 SUBSEP $2
    worst = ($4 > $5 ? $4 : $5) + 0
    v[key] = v[key] " " worst; c[key] = c[key] " " $8; s[$1] = 1; rates[$2] = 1
  }
  function median(str,   a, n, i, j, t) {
    n = split(str, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return a[int((n + 1) / 2)]
  }
  END {
    for (srv in s) {
      best[srv] = 0
      for (key in v) { split(key, p, SUBSEP); if (p[1] == srv && median(v[key]) < 1 && p[2] + 0 > best[srv]) { best[srv] = p[2] + 0; cpu[srv] = median(c[key]) } }
      printf "  %-13s %7d/s  (CPU %s us per exchange at that rate)\n", srv, best[srv], cpu[srv]
    }
    if (best["kea"] > 0) for (srv in s) if (srv != "kea") printf "  %s / kea = %.2fx\n", srv, best[srv] / best["kea"]
  }' "$results"
[ -n "$json" ] && python3 -c 'import csv,json,sys; print(json.dumps(list(csv.DictReader(open(sys.argv[1]), delimiter="\t")), indent=1))' "$results" > "$json"
exit 0
