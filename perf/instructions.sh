#!/usr/bin/env bash
# User-space instructions per exchange of one lessor build, under callgrind: steadier than
# rates on a noisy VM (docs/PERFORMANCE.md, "second pass").
#
#   perf/instructions.sh --bin DIR [--family 4|6] [--gen DIR]
#
# Runs lessor (one worker, sync group, no preallocated spare, control off when the build
# knows it) under `valgrind --tool=callgrind` twice, with `lessor-perf load` (or
# `load6 --ia both`) at 200/s for 5 s and for 15 s, and prints (Ir(15 s) - Ir(5 s)) / (exchanges(15 s) - exchanges(5 s)), so
# start-up cancels out; the exchanges are the server's own ACK (REPLY) count. The generator
# comes from --gen (default DIR), so two builds can be measured with the same one. The
# callgrind files are kept in a directory it names, for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
. perf/lib.sh
family=4 bin="" gen=""
parse_args "family bin gen" "$@"
[ -n "$bin" ] || { echo "--bin DIR is required" >&2; exit 2; }
gen=${gen:-$bin}
command -v valgrind >/dev/null || { echo "valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
make_work lessor-instr
workers=1
declare -A ir n
for secs in 5 15; do
  rm -rf "$work/state"; mkdir -p "$work/state"
  lessor_config "$family" group > "$work/lessor.yaml"
  # No spare segment: its zero fill runs in the background, in one window or the other.
  sed -i 's/journal: { sync: group }/journal: { sync: group, preallocate: false }/' "$work/lessor.yaml"
  "$bin/lessor" --help | grep -q -- --control && echo 'control: off' >> "$work/lessor.yaml"
  valgrind --tool=callgrind --callgrind-out-file="$work/cg-$secs.out" \
    "$bin/lessor" --config "$work/lessor.yaml" > "$work/server-$secs.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 150); do grep -q 'leases live' "$work/server-$secs.log" && break; sleep 0.2; done
  if [ "$family" = 6 ]; then
    "$gen/lessor-perf" load6 --ia both --rate 200 --duration "$secs" --quiet > /dev/null 2>&1 || true
    key=replies6
  else
    "$gen/lessor-perf" load --rate 200 --duration "$secs" --quiet > /dev/null 2>&1 || true
    key=acks
  fi
  kill -INT "$pid"; wait "$pid" || true; pid=""
  ir[$secs]=$(awk '/^(summary|totals):/ { print $2; exit }' "$work/cg-$secs.out")
  n[$secs]=$(grep -o "$key=[0-9]*" "$work/server-$secs.log" | head -1 | cut -d= -f2)
done
keep=$(mktemp -d /var/tmp/lessor-callgrind.XXXXXX)
cp "$work"/cg-*.out "$keep"/
python3 -c "print(f'DHCPv$family: {(${ir[15]} - ${ir[5]}) / (${n[15]} - ${n[5]}):.0f} instructions per exchange ({${n[15]} - ${n[5]}} exchanges; callgrind files in $keep)')"
