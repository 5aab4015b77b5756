#!/usr/bin/env bash
# Benchmarks cairn against etcd 3.4 on this machine, in one run, with one load
# generator (`cairn bench kv --target cairn|etcd`), and prints a markdown table of
# ops/s, p50, p99 and server CPU per operation for each cell with the ratios to
# etcd; optionally also a second cairn cluster from another binary (a baseline,
# for before/after figures in one run). docs/benchmarks.md explains the method and
# holds the results.
#
#   cluster/bench.sh                   10 s per cell (a quick look)
#   DURATION=30 cluster/bench.sh       the full run behind docs/benchmarks.md
#
# What it does:
#   1. builds target/release/cairn with `--features etcd-bench` (needs protoc);
#   2. starts a 3-node cairn cluster (gRPC 127.0.0.1:7610-7612, HTTP 7690-7692)
#      and a 3-member etcd cluster (clients 127.0.0.1:2479-2481, peers 2579-2581),
#      each node with its own data directory under one temp directory;
#   3. runs {put, get linearizable, get stale} x {1, 16, 64} clients, 256-byte
#      values over 1000 keys, DURATION seconds per cell, against both systems,
#      alternating which goes first from one cell to the next so that drift (page
#      cache, disk, the other load on the machine) falls on both alike;
#   4. measures each system's server CPU (user + system seconds of its three
#      processes, from /proc/<pid>/stat) around every cell, adds it to the cell's
#      report with the microseconds per operation, appends every report (one JSON
#      line each) to the results file and prints the table, also written next to
#      it as .md;
#   5. on exit, however it exits, stops the processes it started (by pid) and
#      removes its temp directory.
#
# Environment:
#   CAIRN_BIN     measure this cairn binary instead of building target/release/cairn
#   DURATION      seconds per cell and system (default 10)
#   RESULTS       results file (default target/bench/results-<UTC time>.jsonl);
#                 appended to, so a file from an earlier run gets the new lines too
#   ETCD_BIN      etcd binary (default: `etcd` on PATH)
#   CAIRN_BASELINE_BIN  a second cairn binary (e.g. a release build of an older
#                 commit): also started as a 3-node cluster (gRPC 7620-7622, HTTP
#                 7700-7702) and measured in every cell as the system `cairn-base`,
#                 by the same load generator
#   CAIRN_LEASE=1 also a cluster of the measured binary started with --read-lease
#                 (gRPC 7630-7632, HTTP 7710-7712), measured as the system
#                 `cairn-lease`
#   TMPDIR        where the temp directory goes (default /tmp); put it on the disk
#                 you mean to measure: both systems fsync there
#
# If etcd or protoc is missing and this runs as root, it installs the Debian
# packages etcd-server, protobuf-compiler and libprotobuf-dev; otherwise it says what to install.
# Only loopback addresses are used. Every wait is bounded.
set -euo pipefail

readonly NODES=3
readonly CAIRN_GRPC_PORT_BASE=7610
readonly CAIRN_HTTP_PORT_BASE=7690
readonly ETCD_CLIENT_PORT_BASE=2479
readonly ETCD_PEER_PORT_BASE=2579
readonly BASE_GRPC_PORT_BASE=7620
readonly BASE_HTTP_PORT_BASE=7700
readonly LEASE_GRPC_PORT_BASE=7630
readonly LEASE_HTTP_PORT_BASE=7710
readonly VALUE_SIZE_BYTES=256
readonly KEYS=1000
readonly CLIENT_COUNTS=(1 16 64)
# Workloads as "op consistency"; consistency is ignored by puts.
readonly WORKLOADS=("put linearizable" "get linearizable" "get stale")
readonly UP_WAIT_SECS=30
readonly STOP_WAIT_SECS=10
# A cell gets DURATION plus this for connecting and pre-populating the keys.
readonly CELL_SLACK_SECS=120

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
duration_secs="${DURATION:-10}"
[[ "$duration_secs" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "bench.sh: DURATION must be a number of seconds" >&2; exit 2; }

SCRIPT_NAME=bench.sh
# shellcheck source=cluster/bench-lib.sh
source "$root/cluster/bench-lib.sh"

etcd_bin="${ETCD_BIN:-etcd}"
missing=()
command -v "$etcd_bin" >/dev/null || missing+=(etcd-server)
command -v protoc >/dev/null || [[ -n "${PROTOC:-}" ]] || missing+=(protobuf-compiler)
# etcd-client's protos import protobuf's well-known types (descriptor.proto).
[[ -e /usr/include/google/protobuf/descriptor.proto || -n "${PROTOC:-}" ]] || missing+=(libprotobuf-dev)
command -v curl >/dev/null || missing+=(curl)
if (( ${#missing[@]} > 0 )); then
  install_debian_packages "${missing[@]}"
fi
command -v "$etcd_bin" >/dev/null || die "no etcd binary ($etcd_bin)"
etcd_version="$("$etcd_bin" --version | awk '/^etcd Version:/ { print $3 }')"
[[ "$etcd_version" == 3.4.* ]] || log "warning: etcd $etcd_version is not 3.4; the comparison is meant against etcd 3.4"

cairn_binary etcd-bench

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
for (( i = 0; i < NODES; i++ )); do
  for port in $(( CAIRN_GRPC_PORT_BASE + i )) $(( CAIRN_HTTP_PORT_BASE + i )) \
    $(( ETCD_CLIENT_PORT_BASE + i )) $(( ETCD_PEER_PORT_BASE + i )) \
    $(( BASE_GRPC_PORT_BASE + i )) $(( BASE_HTTP_PORT_BASE + i )); do
    if port_in_use "$port"; then
      die "127.0.0.1:$port is already in use; stop whatever listens there first"
    fi
  done
done

results="${RESULTS:-$root/target/bench/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl}"
mkdir -p "$(dirname "$results")"
tmp_dir="$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench.XXXXXX")"

# A private copy: a `cargo build --release` without the feature, run by someone else
# meanwhile, would replace target/release/cairn with one that cannot load etcd.
bin="$tmp_dir/cairn"
cp "$built_bin" "$bin"
if timeout 10 "$bin" bench kv --target etcd --endpoints 127.0.0.1:9 --clients 1 \
  --duration 0 2>&1 | grep -q -- '--features etcd-bench'; then
  die "$built_bin was built without --features etcd-bench (did another build replace it?); run again"
fi

# --- the clusters ----------------------------------------------------------------------
start_cairn_cluster
main_endpoints="$cairn_endpoints"
main_pids=("${cairn_pids[@]}")
systems=(cairn etcd)
base_endpoints="" base_pids=()
if [[ -n "${CAIRN_BASELINE_BIN:-}" ]]; then
  [[ -x "$CAIRN_BASELINE_BIN" ]] || die "CAIRN_BASELINE_BIN=$CAIRN_BASELINE_BIN is not an executable"
  cp "$CAIRN_BASELINE_BIN" "$tmp_dir/cairn-base"
  start_cairn_cluster "$tmp_dir/cairn-base" "$BASE_GRPC_PORT_BASE" "$BASE_HTTP_PORT_BASE" base
  base_endpoints="$cairn_endpoints"
  base_pids=("${cairn_pids[@]}")
  systems+=(cairn-base)
fi
lease_endpoints="" lease_pids=()
if [[ "${CAIRN_LEASE:-0}" == 1 ]]; then
  start_cairn_cluster "$bin" "$LEASE_GRPC_PORT_BASE" "$LEASE_HTTP_PORT_BASE" lease --read-lease
  lease_endpoints="$cairn_endpoints"
  lease_pids=("${cairn_pids[@]}")
  systems+=(cairn-lease)
fi
cairn_endpoints="$main_endpoints"
etcd_pids=()
etcd_cluster="" etcd_endpoints=""
for (( i = 1; i <= NODES; i++ )); do
  etcd_cluster+="${etcd_cluster:+,}etcd$i=http://127.0.0.1:$(( ETCD_PEER_PORT_BASE + i - 1 ))"
  etcd_endpoints+="${etcd_endpoints:+,}127.0.0.1:$(( ETCD_CLIENT_PORT_BASE + i - 1 ))"
done

for (( i = 1; i <= NODES; i++ )); do
  dir="$tmp_dir/etcd$i"
  mkdir -p "$dir"
  "$etcd_bin" \
    --name "etcd$i" \
    --data-dir "$dir/data" \
    --listen-client-urls "http://127.0.0.1:$(( ETCD_CLIENT_PORT_BASE + i - 1 ))" \
    --advertise-client-urls "http://127.0.0.1:$(( ETCD_CLIENT_PORT_BASE + i - 1 ))" \
    --listen-peer-urls "http://127.0.0.1:$(( ETCD_PEER_PORT_BASE + i - 1 ))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$(( ETCD_PEER_PORT_BASE + i - 1 ))" \
    --initial-cluster "$etcd_cluster" \
    --initial-cluster-token cairn-bench \
    --initial-cluster-state new \
    --logger zap \
    > "$dir/node.log" 2>&1 < /dev/null &
  pids+=("$!")
  etcd_pids+=("$!")
done
log "started cairn ($cairn_endpoints) and etcd ($etcd_endpoints) under $tmp_dir; pids ${pids[*]}"

etcd_ready() {
  local i health
  for (( i = 1; i <= NODES; i++ )); do
    health="$(curl -s --max-time 2 "http://127.0.0.1:$(( ETCD_CLIENT_PORT_BASE + i - 1 ))/health" || true)"
    [[ "$health" == *'"health":"true"'* ]] || return 1
  done
}

deadline=$(( SECONDS + UP_WAIT_SECS ))
cairn_up=0 etcd_up=0
while (( cairn_up == 0 || etcd_up == 0 )); do
  all_alive || die "a node exited while starting"
  (( SECONDS < deadline )) || die "clusters not ready after ${UP_WAIT_SECS}s (cairn ready: $cairn_up, etcd ready: $etcd_up)"
  (( cairn_up == 1 )) || { cairn_ready && { [[ -z "$base_endpoints" ]] || cairn_ready "$base_endpoints"; } \
    && { [[ -z "$lease_endpoints" ]] || cairn_ready "$lease_endpoints"; } \
    && cairn_up=1 && log "cairn has a leader"; } || true
  (( etcd_up == 1 )) || { etcd_ready && etcd_up=1 && log "etcd is healthy"; } || true
  (( cairn_up == 1 && etcd_up == 1 )) || sleep 0.5
done

# --- the matrix ----------------------------------------------------------------------
cell_timeout_secs="$(awk -v d="$duration_secs" -v s="$CELL_SLACK_SECS" 'BEGIN { printf "%d", d + s + 1 }')"
failures=0

run_cell() {
  local system="$1" op="$2" consistency="$3" clients="$4" target=cairn endpoints line
  local server_pids cpu_before cpu_after
  case "$system" in
    cairn) endpoints="$main_endpoints"; server_pids=("${main_pids[@]}") ;;
    cairn-base) endpoints="$base_endpoints"; server_pids=("${base_pids[@]}") ;;
    cairn-lease) endpoints="$lease_endpoints"; server_pids=("${lease_pids[@]}") ;;
    etcd) target=etcd; endpoints="$etcd_endpoints"; server_pids=("${etcd_pids[@]}") ;;
  esac
  # The CPU includes the untimed set-up (connecting, pre-populating the keys of a
  # get cell), a few hundred ms at most; the cell's ops then dilute it.
  cpu_before="$(cpu_secs "${server_pids[@]}")"
  if line="$(timeout "$cell_timeout_secs" "$bin" bench kv \
    --target "$target" --endpoints "$endpoints" \
    --clients "$clients" --duration "$duration_secs" --value-size "$VALUE_SIZE_BYTES" \
    --op "$op" --consistency "$consistency" --keys "$KEYS" --json)"; then
    cpu_after="$(cpu_secs "${server_pids[@]}")"
    line="$(with_server_cpu "$line" "$(awk -v a="$cpu_before" -v b="$cpu_after" 'BEGIN { printf "%.2f", b - a }')" "$system")"
    echo "$line" >> "$results"
    log "$line"
  else
    log "FAILED: $system $op/$consistency clients=$clients"
    failures=$(( failures + 1 ))
  fi
}

log "running ${#WORKLOADS[@]} workloads x ${#CLIENT_COUNTS[@]} client counts x ${#systems[@]} systems (${systems[*]}), ${duration_secs}s each; results in $results"
cell=0
for workload in "${WORKLOADS[@]}"; do
  read -r op consistency <<< "$workload"
  for clients in "${CLIENT_COUNTS[@]}"; do
    all_alive || die "a node exited during the run"
    # Rotate which system goes first from one cell to the next.
    order=()
    for (( s = 0; s < ${#systems[@]}; s++ )); do
      order+=("${systems[$(( (s + cell) % ${#systems[@]} ))]}")
    done
    for system in "${order[@]}"; do
      run_cell "$system" "$op" "$consistency" "$clients"
    done
    cell=$(( cell + 1 ))
  done
done

# --- the table -----------------------------------------------------------------------
# Reads the JSON lines of this run (the last line per system and cell wins) with
# awk alone: the reports are flat objects with fixed field names. One row per cell
# and system; ratios are against etcd in the same cell.
table() {
  awk "$AWK_REPORT_FUNCTIONS"'
    {
      t = field($0, "system"); if (t == "") t = field($0, "target")
      op = field($0, "op"); c = field($0, "consistency"); n = field($0, "clients")
      w = (op == "put") ? "put" : op " " c
      k = w SUBSEP n
      if (!(k in seen)) { seen[k] = 1; order[++cells] = k; wl[k] = w; cl[k] = n }
      if (!((k, t) in has)) { rows[k] = rows[k] " " t }
      ops[k, t] = field($0, "ops_per_sec"); p50[k, t] = field($0, "latency_ms_p50")
      p99[k, t] = field($0, "latency_ms_p99"); err[k, t] = field($0, "errors")
      cpu[k, t] = field($0, "server_cpu_us_per_op")
      has[k, t] = 1
    }
    END {
      print "| workload | clients | system | ops/s | ops/s vs etcd | p50 ms | p99 ms | p99 vs etcd | server CPU µs/op | CPU/op vs etcd | errors |"
      print "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
      for (i = 1; i <= cells; i++) {
        k = order[i]
        m = split(rows[k], names, " ")
        for (j = 1; j <= m; j++) {
          t = names[j]
          e = has[k, "etcd"]
          printf "| %s | %s | %s | %.0f | %s | %.2f | %.2f | %s | %s | %s | %s |\n", \
            wl[k], cl[k], t, ops[k, t], e ? ratio(ops[k, t], ops[k, "etcd"]) : "n/a", \
            p50[k, t], p99[k, t], e ? ratio(p99[k, t], p99[k, "etcd"]) : "n/a", \
            cpu[k, t], (e && cpu[k, t] != "null") ? ratio(cpu[k, t], cpu[k, "etcd"]) : "n/a", err[k, t]
        }
      }
    }
  '
}

table_file="${results%.jsonl}.md"
{
  echo "DURATION=${duration_secs}s per cell, ${VALUE_SIZE_BYTES}-byte values over ${KEYS} keys, 3 nodes each on 127.0.0.1;"
  echo "cairn $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)${base_endpoints:+ (cairn-base: $CAIRN_BASELINE_BIN)}, etcd $etcd_version;"
  echo "$(nproc) cores, $(free -h | awk '/^Mem:/ { print $2 }') memory, data on $(df -h "$tmp_dir" | awk 'NR == 2 { print $1 " (" $2 ")" }')."
  echo
  # Only this run's lines: RESULTS may name a file with older runs in it.
  tail -n "$(( cell * ${#systems[@]} - failures ))" "$results" | table
} > "$table_file"
cat "$table_file"
log "results: $results; table: $table_file"
(( failures == 0 )) || die "$failures cell(s) failed"
