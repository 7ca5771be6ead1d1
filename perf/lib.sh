# Sourced by the comparison scripts: their arguments, the binaries, the work directory, and
# the servers they start (lessor or Kea, DHCPv4 or DHCPv6, on loopback, with the same subnet
# and pools: 10.0.0.0/8 relayed by 127.0.0.1; fd00:231::/64 and fd00:2300::/32 delegated as
# /56, relayed by fd00:231::1 or ::1).

# parse_args "NAME ..." ARGS...: each `--name VALUE` of the names given sets $name (a dash in
# the option is an underscore in the variable); anything else exits 2.
parse_args() {
  local takes=" $1 " name
  shift
  while [ $# -gt 0 ]; do
    name=${1#--}
    name=${name//-/_}
    case "$1:$takes" in
      --*:*" $name "*)
        [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }
        printf -v "$name" '%s' "$2"
        shift 2 ;;
      *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
  done
}

# Sets bin to the directory of lessor and lessor-perf: $bin (--bin) made absolute, or else a
# release build's, built now.
find_binaries() {
  if [ -n "$bin" ]; then
    bin=$(cd "$bin" && pwd)
  else
    cargo build --release -q -p lessor-server -p lessor-perf
    bin=$PWD/target/release
  fi
}

# make_work PREFIX: a fresh directory $work under /var/tmp; on exit the server ($pid) stops and
# the directory goes.
make_work() {
  work=$(mktemp -d "/var/tmp/$1.XXXXXX")
  pid=""
  trap cleanup EXIT
}
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
stop_server() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; }

# lessor_config FAMILY SYNC [lifetimes]: lessor's configuration with $workers workers and the
# journal's sync mode SYNC (port: the v4 port, in test mode too, never 67). With `lifetimes`
# the v6 section sets Kea's lifetimes. The v6 subnet is selected by perfdhcp's relay address
# ::1 or load6's link-address fd00:231::1; the pools hold every client of a 25k/s x 10 s run.
lessor_config() {
  printf 'port: 6767\nstate_dir: %s\nworkers: %s\njournal: { sync: %s }\n' "$work/state" "$workers" "$2"
  if [ "$1" = 6 ]; then
    printf 'v6:\n  port: 6547\n'
    [ "${3:-}" = lifetimes ] && printf '  preferred_lifetime: 3000\n  valid_lifetime: 4000\n'
    printf '  subnets:\n    - subnet: fd00:231::/64\n      relays: ["fd00:231::1", "::1"]\n      pools: ["fd00:231::1:0-fd00:231::ff:ffff"]\n      pd_pools: [ { prefix: "fd00:2300::/32", delegated_len: 56 } ]\n'
  else
    printf 'v4:\n  lease_time: 4000\n  subnets:\n    - subnet: 10.0.0.0/8\n      relays: [127.0.0.1]\n      pools: ["10.0.0.1-10.255.255.254"]\n'
  fi
}

# kea_config FAMILY: kea-dhcp4's or kea-dhcp6's configuration, memfile with persist on,
# multi-threading on. Kea listens on loopback only by unicast address ("lo/::1": lo has no
# link-local address); its server DUID file goes to data-directory.
kea_config() {
  if [ "$1" = 6 ]; then
    printf '{ "Dhcp6": { "data-directory": "%s/kea", "interfaces-config": { "interfaces": [ "lo/::1" ] },
  "lease-database": { "type": "memfile", "persist": true, "name": "%s/kea/leases6.csv" },
  "multi-threading": { "enable-multi-threading": true, "thread-pool-size": 2, "packet-queue-size": 64 },
  "preferred-lifetime": 3000, "valid-lifetime": 4000,
  "subnet6": [ { "id": 1, "subnet": "fd00:231::/64",
                 "pools": [ { "pool": "fd00:231::1:0 - fd00:231::ff:ffff" } ],
                 "pd-pools": [ { "prefix": "fd00:2300::", "prefix-len": 32, "delegated-len": 56 } ],
                 "relay": { "ip-addresses": [ "fd00:231::1", "::1" ] } } ],
  "loggers": [ { "name": "kea-dhcp6", "output_options": [ { "output": "%s/kea/kea.log" } ], "severity": "WARN" } ] } }\n' \
      "$work" "$work" "$work"
  else
    printf '{ "Dhcp4": { "interfaces-config": { "interfaces": [ "lo" ], "dhcp-socket-type": "udp" },
  "lease-database": { "type": "memfile", "persist": true, "name": "%s/kea/leases4.csv" },
  "multi-threading": { "enable-multi-threading": true, "thread-pool-size": 2, "packet-queue-size": 64 },
  "valid-lifetime": 4000,
  "subnet4": [ { "id": 1, "subnet": "10.0.0.0/8", "pools": [ { "pool": "10.0.0.1 - 10.255.255.254" } ],
                 "relay": { "ip-addresses": [ "127.0.0.1" ] } } ] } }\n' "$work"
  fi
}

# start_server FAMILY NAME CORES [lifetimes]: a fresh lessor-SYNC or kea server with an empty
# state on CORES, its output in $work/server.log; sets pid. Kea sends every reply to the
# generator's port (-P: a RELAY-REPL otherwise goes to 547, unless the relay names its port in
# option 135 as load6 does).
start_server() {
  local family=$1 name=$2 cores=$3
  rm -rf "$work/state" "$work/kea"; mkdir -p "$work/state" "$work/kea"
  case "$name" in
    lessor-*)
      lessor_config "$family" "${name#lessor-}" "${4:-}" > "$work/lessor.yaml"
      RUST_LOG=warn taskset -c "$cores" "$bin/lessor" --config "$work/lessor.yaml" > "$work/server.log" 2>&1 &
      ;;
    kea)
      mkdir -p /run/kea /var/run/kea
      command -v "kea-dhcp$family" >/dev/null || {
        echo "kea-dhcp$family is missing (apt-get install kea-dhcp$family-server)" >&2; exit 1; }
      kea_config "$family" > "$work/kea.json"
      local port=6767
      [ "$family" = 6 ] && port=6547
      taskset -c "$cores" "kea-dhcp$family" -c "$work/kea.json" -p "$port" -P "$((port + 1))" > "$work/server.log" 2>&1 &
      ;;
    *) echo "unknown server $name" >&2; exit 2 ;;
  esac
  pid=$!
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
