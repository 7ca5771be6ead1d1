#!/usr/bin/env bash
# DHCPv4 DORA/s of one lessor alone, of a hot-standby pair with `ha.sync: true` (`sync`, and
# `keyed`: the same with `ha.stream_key_file`, every stream message tagged), and of the pair
# with `ha.sync: false`, in the same run (docs/HA.md): a three-member etcd on loopback, the
# leader loaded by `lessor-perf load` as a relay, the standby receiving its journal. Mode
# `balanced`: a load-balancing pair with `sync: true`, server a loaded with the clients of
# its own scope only (`lessor-perf load --scope 0`), b serving nothing but its stream.
#
#   perf/ha-pair.sh [--seconds 10] [--runs 3] [--inflight 256]
#                   [--modes "single sync keyed async balanced"] [--bin DIR]
#
# Every run starts fresh servers with empty states (and a cluster name of its own in the one
# etcd). The leader is pinned to core 1; the standby, etcd and the generator share core 0 (a
# pair normally has a machine each: here the standby's syncs and acks compete with the
# generator). Prints per run: DORA/s, drops, DORA p50/p99/p99.9 (us), the leader's CPU per
# DORA, violations, and the stream's state and lag at the end; then the medians per mode.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
cd "$(dirname "$0")/.."

. perf/lib.sh

seconds=10 runs=3 inflight=256 workers=1
modes="single sync keyed async"
bin=""
parse_args "seconds runs inflight modes bin" "$@"
command -v etcd >/dev/null || { echo "etcd is missing (apt-get install etcd-server)" >&2; exit 1; }
find_binaries
make_work lessor-ha

etcd_pids=() standby=""
cleanup_all() {
  [ -n "$standby" ] && kill "$standby" 2>/dev/null && wait "$standby" 2>/dev/null
  for p in "${etcd_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  cleanup
}
trap cleanup_all EXIT

# A three-member etcd on 127.0.0.1:23791-23793 (peers on 23801-23803).
initial="e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802,e3=http://127.0.0.1:23803"
for i in 1 2 3; do
  taskset -c 0 etcd --name "e$i" --data-dir "$work/etcd$i" \
    --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
    --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
    --initial-cluster "$initial" --initial-cluster-state new > "$work/etcd$i.log" 2>&1 &
  etcd_pids+=($!)
done
endpoints="http://127.0.0.1:23791,http://127.0.0.1:23792,http://127.0.0.1:23793"
for _ in $(seq 50); do
  ETCDCTL_API=3 etcdctl --endpoints "$endpoints" endpoint health > /dev/null 2>&1 && break
  sleep 0.2
done

# config NODE PORT CONTROL SYNC CLUSTER [KEY] [MODE]: server NODE of the pair (NODE "single":
# no ha), with the stream key file KEY if given, in ha.mode MODE (default hot-standby).
config() {
  printf 'port: %s\nstate_dir: %s\nworkers: 1\ncontrol: { listen: "127.0.0.1:%s" }\n' "$2" "$work/$1" "$3"
  printf 'v4:\n  lease_time: 4000\n  subnets:\n    - subnet: 10.0.0.0/8\n      relays: [127.0.0.1]\n      pools: ["10.0.0.1-10.255.255.254"]\n'
  [ "$1" = single ] && return
  printf 'ha:\n  mode: %s\n  node: %s\n  cluster: %s\n  sync: %s\n' "${7:-hot-standby}" "$1" "$5" "$4"
  [ -n "${6:-}" ] && printf '  stream_key_file: "%s"\n' "$6"
  printf '  etcd: [ "http://127.0.0.1:23791", "http://127.0.0.1:23792", "http://127.0.0.1:23793" ]\n'
  printf '  peers:\n    - { name: a, url: "http://127.0.0.1:18067", stream: "127.0.0.1:18068" }\n'
  printf '    - { name: b, url: "http://127.0.0.1:18077", stream: "127.0.0.1:18078" }\n'
}

# ha_field CONTROL EXPR: a field of status-get's `ha` object (python expression on `ha`).
ha_field() {
  curl -s -X POST "http://127.0.0.1:$1/" -d '{"command": "status-get"}' |
    python3 -c "import json,sys; ha = json.load(sys.stdin)[0]['arguments'].get('ha') or {}; print($2)" 2>/dev/null
}

wait_for() { # CONTROL EXPR VALUE: waits up to 30 s for EXPR to print VALUE
  for _ in $(seq 150); do
    [ "$(ha_field "$1" "$2")" = "$3" ] && return 0
    sleep 0.2
  done
  echo "gave up waiting for $2 = $3 on :$1" >&2
  return 1
}

run() { # MODE N: one run; prints "dora/s drops% p50 p99 p99.9 cpu_us violations state lag"
  local mode=$1 n=$2 sync=true state="-" lag="-" key="" ha_mode=hot-standby scope=()
  [ "$mode" = async ] && sync=false
  if [ "$mode" = balanced ]; then
    ha_mode=load-balancing scope=(--scope 0)
  fi
  if [ "$mode" = keyed ]; then
    key="$work/stream.key"
    head -c 48 /dev/urandom | base64 > "$key"
    chmod 600 "$key"
  fi
  rm -rf "$work/a" "$work/b" "$work/single"
  local node=a
  [ "$mode" = single ] && node=single
  mkdir -p "$work/$node"
  config "$node" 6767 18067 "$sync" "bench-$$-$mode-$n" "$key" "$ha_mode" > "$work/$node.yaml"
  RUST_LOG=warn taskset -c 1 "$bin/lessor" --config "$work/$node.yaml" > "$work/$node.log" 2>&1 &
  pid=$!
  if [ "$mode" != single ]; then
    local ok=true
    # A balanced pair starts together: each takes its own scope.
    [ "$mode" = balanced ] || wait_for 18067 "ha['role']" leader || ok=false
    mkdir -p "$work/b"
    config b 6777 18077 "$sync" "bench-$$-$mode-$n" "$key" "$ha_mode" > "$work/b.yaml"
    RUST_LOG=warn taskset -c 0 "$bin/lessor" --config "$work/b.yaml" > "$work/b.log" 2>&1 &
    standby=$!
    if [ "$mode" = balanced ]; then
      $ok && wait_for 18067 "[s['served'] for s in ha['scopes']]" "[True, False]" || ok=false
      $ok && wait_for 18077 "[s['served'] for s in ha['scopes']]" "[False, True]" || ok=false
    else
      $ok && wait_for 18077 "ha['role']" standby || ok=false
    fi
    $ok && wait_for 18067 "ha['stream']['state']" in-sync || ok=false
    if ! $ok; then
      kill "$standby" 2>/dev/null || true; wait "$standby" 2>/dev/null || true; standby=""
      stop_server
      echo "0 100 0 0 0 0 0 not-in-sync -"
      return
    fi
  else
    sleep 2
  fi
  taskset -c 0 "$bin/lessor-perf" load --duration "$seconds" --inflight "$inflight" "${scope[@]}" \
    --server-pid "$pid" --json "$work/out.json" --quiet > /dev/null 2>&1 || true
  if [ "$mode" != single ]; then
    state=$(ha_field 18067 "ha['stream']['state']")
    lag=$(ha_field 18067 "ha['stream']['lag']")
    kill "$standby" 2>/dev/null || true; wait "$standby" 2>/dev/null || true; standby=""
  fi
  stop_server
  python3 - "$work/out.json" "$state" "$lag" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
d = j["latency_us"]["dora"]
drops = j["discover_offer_drops"]["percent"] + j["request_ack_drops"]["percent"]
print(f'{j["achieved_dora_per_s"]:.0f} {drops:.3f} {d["p50"]:.0f} {d["p99"]:.0f} {d["p99_9"]:.0f} '
      f'{j.get("server_cpu_us_per_dora") or 0:.1f} {j["correctness"]["violations"]} {sys.argv[2]} {sys.argv[3]}')
PY
}

echo "mode run: dora/s drops% p50 p99 p99.9 (us) leader-cpu-us/dora violations stream-state lag"
for mode in $modes; do
  : > "$work/$mode.txt"
  for n in $(seq "$runs"); do
    line=$(run "$mode" "$n")
    echo "$mode $n: $line"
    echo "$line" >> "$work/$mode.txt"
  done
done
echo "medians: mode dora/s p99(us)"
for mode in $modes; do
  echo "$mode $(cut -d' ' -f1 "$work/$mode.txt" | median) $(cut -d' ' -f4 "$work/$mode.txt" | median)"
done
