#!/bin/bash
# Memory soak: lessor under a steady open-loop DORA load for a while, its resident memory
# sampled every few seconds. Once every client has a lease the lease table stops growing,
# and so must the process: what is left is journal buffers, compaction and allocator noise.
#
#   perf/soak.sh [--rate 46000] [--minutes 10] [--clients 1000000] [--sync group]
#                [--sample 10] [--workers 1] [--out DIR]
#
# Server on core 1, generator on core 0 (as perf/README.md). Prints one line per sample
# (seconds, RSS MiB, journal MiB, leases acknowledged so far) and a summary: RSS when the
# table is full (the first sample after every client has had its DORA) and at the end, and
# the growth in between. The samples are kept in OUT/rss.csv, the load report in
# OUT/load.json, the server's log in OUT/server.log.
set -euo pipefail

rate=46000 minutes=10 clients=1000000 sync=group sample=10 workers=1 out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rate) rate=$2; shift 2 ;;
        --minutes) minutes=$2; shift 2 ;;
        --clients) clients=$2; shift 2 ;;
        --sync) sync=$2; shift 2 ;;
        --sample) sample=$2; shift 2 ;;
        --workers) workers=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/target/release
[ -x "$bin/lessor" ] && [ -x "$bin/lessor-perf" ] || {
    echo "build first: cargo build --release -p lessor-server -p lessor-perf" >&2
    exit 2
}
work=$(mktemp -d)
out=${out:-$work/out}
mkdir -p "$out"
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$work/state"
}
trap cleanup EXIT

cat >"$work/lessor.yaml" <<EOF
state_dir: $work/state
port: 6767
workers: $workers
journal: { sync: $sync }
v4:
  lease_time: 86400
  subnets:
    - subnet: 10.0.0.0/8
      relays: [127.0.0.1]
      pools: ["10.0.0.1-10.255.255.254"]
EOF

taskset -c 1 "$bin/lessor" run --config "$work/lessor.yaml" >"$out/server.log" 2>&1 &
server=$!
sleep 1.5
kill -0 "$server" || { cat "$out/server.log"; exit 1; }

seconds=$((minutes * 60))
date +%s.%N >"$out/start"
taskset -c 0 "$bin/lessor-perf" load --rate "$rate" --duration "$seconds" --clients "$clients" \
    --server-pid "$server" --json "$out/load.json" >/dev/null 2>"$out/load.err" &
load=$!

full_at=$(( (clients + rate - 1) / rate + sample ))
echo "seconds,rss_mib,journal_mib" >"$out/rss.csv"
t=0
while kill -0 "$load" 2>/dev/null; do
    sleep "$sample"
    t=$((t + sample))
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")
    jr=$(du -sk "$work/state/journal" 2>/dev/null | cut -f1)
    printf '%d,%.1f,%.1f\n' "$t" "$(echo "$rss / 1024" | bc -l)" "$(echo "${jr:-0} / 1024" | bc -l)" \
        | tee -a "$out/rss.csv"
done
wait "$load" || true

python3 - "$out/rss.csv" "$full_at" "$out/load.json" "$out/load.err" "$out/server.log" \
    "$out/start" <<'PY'
import csv, datetime, json, re, statistics, sys
rows = [(int(r["seconds"]), float(r["rss_mib"]), float(r["journal_mib"]))
        for r in csv.DictReader(open(sys.argv[1]))]
full_at = int(sys.argv[2])
after = [r for r in rows if r[0] >= full_at]
report = json.load(open(sys.argv[3]))
if not after:
    sys.exit("the run ended before the table was full")
first, last = after[0], after[-1]
peak = max(r[1] for r in after)
print(f"table full at {first[0]} s: RSS {first[1]:.1f} MiB; end ({last[0]} s): {last[1]:.1f} MiB; "
      f"peak after full {peak:.1f} MiB; growth {last[1] - first[1]:+.1f} MiB "
      f"({(last[1] - first[1]) / first[1] * 100:+.1f}%)")
print(f"journal on disk: max {max(r[2] for r in rows):.0f} MiB, end {rows[-1][2]:.0f} MiB")
lat = report["latency_us"]["dora"]
print(f"load: {report['achieved_dora_per_s']:.0f} DORA/s achieved, drops DO "
      f"{report['discover_offer_drops']['percent']:.3f}% RA {report['request_ack_drops']['percent']:.3f}%, "
      f"DORA p50 {lat['p50']:.0f} us p99 {lat['p99']:.0f} us p99.9 {lat['p99_9']:.0f} us, "
      f"violations {report['correctness']['violations']}")
# Per-second DORA p99 (the generator's progress lines) in seconds that overlap a compaction
# (from the server log: when each "journal compacted" line was written, and how long it took)
# against the others.
start = float(open(sys.argv[6]).read())
p99 = {}
for line in open(sys.argv[4]):
    m = re.match(r"\[\s*(\d+)s\].* p99 (\d+)us", line)
    if m:
        p99[int(m.group(1))] = int(m.group(2))
busy = set()
for line in open(sys.argv[5]):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    if "journal compacted" not in line:
        continue
    stamp = re.match(r"\S+", line).group(0).replace("Z", "+00:00")
    end = datetime.datetime.fromisoformat(stamp).timestamp() - start
    m = re.search(r"elapsed: ([\d.]+)(ms|s|µs)", line)
    took = float(m.group(1)) * {"s": 1, "ms": 1e-3, "µs": 1e-6}[m.group(2)] if m else 0
    busy.update(range(int(end - took), int(end) + 2))
print(f"compactions: {sum('journal compacted' in l for l in open(sys.argv[5]))}")
inside = [v for k, v in p99.items() if k in busy]
outside = [v for k, v in p99.items() if k not in busy and k > 1]
if inside and outside:
    print(f"per-second DORA p99: median {statistics.median(inside)} us in the {len(inside)} seconds "
          f"with a compaction, {statistics.median(outside)} us in the {len(outside)} others "
          f"(max {max(inside)} / {max(outside)} us)")
PY
