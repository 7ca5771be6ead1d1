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
. perf/lib.sh

rates="2000 4000 6000 8000 12000 16000 20000 25000"
seconds=10
runs=3
servers="lessor-group lessor-none kea"
workers=1
json=""
family=4
ia=na
args=()
for a in "$@"; do
  case "$a" in
    -6) family=6 ;;
    -4) family=4 ;;
    *) args+=("$a") ;;
  esac
done
parse_args "ia rates seconds runs servers workers json" "${args[@]}"

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
bin=$PWD/target/release
make_work lessor-compare

server_cores=1
[ "$workers" -gt 1 ] && server_cores=0-1

start() { # name
  local name=$1
  start_server "$family" "$name" "$server_cores" lifetimes
  # Ready when a short perfdhcp run gets an answer.
  for _ in $(seq 1 50); do
    # (perfdhcp's exit status is 3 for such a short run even when it got its answer)
    # -W: with -n 1 perfdhcp 2.2 exits as soon as it has sent unless told to wait for the
    # answer (microseconds); without it the probe saw no answer from kea-dhcp4 nor kea-dhcp6.
    "${perfdhcp_cmd[@]}" -R 10 -n 1 -W 200000 "$perfdhcp_dst" > "$work/probe.out" 2>&1 || true
    if grep -q "received packets: [1-9]" "$work/probe.out"; then return 0; fi
    kill -0 "$pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "$name did not answer" >&2; cat "$work/server.log" >&2; exit 1
}

cpu_ticks() { # utime + stime of the server, in clock ticks
  awk '{ print $14 + $15 }' "/proc/$pid/stat"
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
      start "$server"
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
