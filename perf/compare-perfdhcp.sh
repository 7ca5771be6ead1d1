#!/usr/bin/env bash
# Side by side: Kea's perfdhcp at stepped rates against lessor (journal sync group and none) and
# kea-dhcp4 (memfile, persist on, multi-threading on), on loopback, per ../shared/BENCHMARKING.md.
# With -6, the same for DHCPv6 against lessor's v6 section and kea-dhcp6: perfdhcp -6 as one relay
# (-A 1, link-address = its own address ::1), SOLICIT-ADVERTISE and REQUEST-REPLY, IA_NA, IA_PD or
# both (--ia).
#
#   perf/compare-perfdhcp.sh [-6] [--rates "2000 4000 8000"] [--seconds 10] [--runs 3]
#                            [--servers "lessor-group lessor-none kea"] [--workers 1]
#                            [--ia na|pd|both] [--json FILE]
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
family=4
ia=na
while [ $# -gt 0 ]; do
  case "$1" in
    -6) family=6; shift ;;
    -4) family=4; shift ;;
    --ia) ia=$2; shift 2 ;;
    --rates) rates=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --servers) servers=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

case "$ia" in
  na) lease_type=address-only ;;
  pd) lease_type=prefix-only ;;
  both) lease_type=address-and-prefix ;;
  *) echo "--ia must be na, pd or both" >&2; exit 2 ;;
esac
[ "$family" = 4 ] && [ "$ia" != na ] && { echo "--ia is for -6" >&2; exit 2; }

# perfdhcp's command line per family, without rate and duration. DHCPv4: the relay is 127.0.0.1
# (giaddr), replies come back to port 6768. DHCPv6: -A 1 wraps every message in a RELAY-FORW whose
# link-address and peer-address are ::1 (so the servers select the subnet by relay ::1), and the
# RELAY-REPL must come back to port 6548 (Kea: -P 6548; lessor: the source port, in test mode).
if [ "$family" = 6 ]; then
  perfdhcp_cmd=(perfdhcp -6 -l ::1 -N 6547 -L 6548 -A 1 -e "$lease_type" -g single)
  perfdhcp_dst=::1
else
  perfdhcp_cmd=(perfdhcp -4 -l 127.0.0.1 -N 6767 -L 6768 -g single)
  perfdhcp_dst=127.0.0.1
fi

for tool in perfdhcp taskset; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install kea-admin util-linux)" >&2; exit 1; }
done
case " $servers " in
  *" lessor-"*) cargo build --release -q -p lessor-server ;;
esac
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
      if [ "$family" = 6 ]; then
        # The v6 section (server/src/config): subnet selected by perfdhcp's relay address ::1
        # (and load6's default link-address fd00:231::1), pools large enough for every client
        # of a 25k/s x 10 s run. port: v4 in test mode too, never 67.
        cat > "$work/lessor.yaml" <<EOF
port: 6767
state_dir: $work/state
workers: $workers
journal: { sync: $sync }
v6:
  port: 6547
  preferred_lifetime: 3000
  valid_lifetime: 4000
  subnets:
    - subnet: fd00:231::/64
      relays: ["fd00:231::1", "::1"]
      pools: ["fd00:231::1:0-fd00:231::ff:ffff"]
      pd_pools: [ { prefix: "fd00:2300::/32", delegated_len: 56 } ]
EOF
      else
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
      fi
      RUST_LOG=warn taskset -c "$server_cores" "$lessor" --config "$work/lessor.yaml" > "$work/server.log" 2>&1 &
      server_pid=$!
      ;;
    kea)
      mkdir -p /run/kea /var/run/kea
      if [ "$family" = 6 ]; then
        command -v kea-dhcp6 >/dev/null || { echo "kea-dhcp6 is missing (apt-get install kea-dhcp6-server)" >&2; exit 1; }
        # Kea listens on loopback only by unicast address ("lo/::1": lo has no link-local
        # address); its server DUID file goes to data-directory; -P 6548 sends every reply to
        # perfdhcp's port (a RELAY-REPL otherwise goes to 547, unless the relay names its port
        # in option 135 as load6 does). Same subnet and pools as lessor's above.
        cat > "$work/kea.json" <<EOF
{ "Dhcp6": {
  "data-directory": "$work/kea",
  "interfaces-config": { "interfaces": [ "lo/::1" ] },
  "lease-database": { "type": "memfile", "persist": true, "name": "$work/kea/leases6.csv" },
  "multi-threading": { "enable-multi-threading": true, "thread-pool-size": 2, "packet-queue-size": 64 },
  "preferred-lifetime": 3000, "valid-lifetime": 4000,
  "subnet6": [ { "id": 1, "subnet": "fd00:231::/64",
                 "pools": [ { "pool": "fd00:231::1:0 - fd00:231::ff:ffff" } ],
                 "pd-pools": [ { "prefix": "fd00:2300::", "prefix-len": 32, "delegated-len": 56 } ],
                 "relay": { "ip-addresses": [ "fd00:231::1", "::1" ] } } ],
  "loggers": [ { "name": "kea-dhcp6", "output_options": [ { "output": "$work/kea/kea.log" } ], "severity": "WARN" } ] } }
EOF
        taskset -c "$server_cores" kea-dhcp6 -c "$work/kea.json" -p 6547 -P 6548 > "$work/server.log" 2>&1 &
        server_pid=$!
      else
      command -v kea-dhcp4 >/dev/null || { echo "kea-dhcp4 is missing (apt-get install kea-dhcp4-server)" >&2; exit 1; }
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
      fi
      ;;
    *) echo "unknown server $name" >&2; exit 2 ;;
  esac
  # Ready when a short perfdhcp run gets an answer.
  for _ in $(seq 1 50); do
    # (perfdhcp's exit status is 3 for such a short run even when it got its answer)
    # -W: with -n 1 perfdhcp 2.2 exits as soon as it has sent unless told to wait for the
    # answer (microseconds); without it the probe saw no answer from kea-dhcp4 nor kea-dhcp6.
    "${perfdhcp_cmd[@]}" -R 10 -n 1 -W 200000 "$perfdhcp_dst" > "$work/probe.out" 2>&1 || true
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
# Columns are named for DHCPv4; with -6 they hold SOLICIT-ADVERTISE, REQUEST-REPLY and REPLYs.
# "rejected": replies perfdhcp counted as rejected leases (no address or prefix in them).
printf "server\trate\trun\tdo_drop_pct\tra_drop_pct\tacks_per_s\tra_avg_ms\tcpu_us_per_exchange\trejected\n" > "$results"
if [ "$family" = 6 ]; then
  echo "DHCPv6 ($ia): SA = SOLICIT-ADVERTISE, RR = REQUEST-REPLY"
  printf "%-13s %6s %3s %9s %9s %9s %9s %10s %8s\n" server rate run "SA drop%" "RR drop%" "REPLY/s" "RR ms" "CPU us/ex" rejected
else
  printf "%-13s %6s %3s %9s %9s %9s %9s %10s %8s\n" server rate run "DO drop%" "RA drop%" "ACK/s" "RA ms" "CPU us/ex" rejected
fi
for server in $servers; do
  for rate in $rates; do
    for run in $(seq 1 "$runs"); do
      start_server "$server"
      t0=$(cpu_ticks)
      out=$(taskset -c 0 "${perfdhcp_cmd[@]}" -R 10000000 -r "$rate" -p "$seconds" "$perfdhcp_dst" 2>&1 || true)
      t1=$(cpu_ticks)
      stop_server
      # perfdhcp prints a block per exchange: DISCOVER-OFFER (SOLICIT-ADVERTISE) first, then
      # REQUEST-ACK (REQUEST-REPLY).
      line=$(awk -v sec="$seconds" -v cpu=$((t1 - t0)) -v hz="$hz" '
        /drops ratio:/ { gsub("%", "", $3); d[++n] = $3 }
        /received packets:/ { r[++m] = $3 }
        /avg delay:/ { a[++k] = $3 }
        /rejected leases:/ { rej += $3 }
        END {
          acks = r[2] + 0
          us = acks > 0 ? cpu / hz * 1e6 / acks : 0
          printf "%s\t%s\t%.0f\t%s\t%.1f\t%d", d[1], d[2], acks / sec, a[2], us, rej
        }' <<< "$out")
      printf "%s\t%s\t%s\t%s\n" "$server" "$rate" "$run" "$line" >> "$results"
      IFS=$'\t' read -r dod rad aps ams cpu rej <<< "$line"
      printf "%-13s %6s %3s %9s %9s %9s %9s %10s %8s\n" "$server" "$rate" "$run" "$dod" "$rad" "$aps" "$ams" "$cpu" "$rej"
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
