#!/usr/bin/env bash
# Benchmarks cairn's queues against NATS JetStream (file storage, 3 replicas) on
# this machine, in one run, with one load generator (`cairn bench queue --target
# cairn|nats`), and prints a markdown table of send and receive ops/s, p50 and p99
# per cell with the cairn/NATS ratios. docs/benchmarks.md ("Queues") explains the
# method and holds the results.
#
#   cluster/bench-queue.sh                   10 s per cell (a quick look)
#   DURATION=30 cluster/bench-queue.sh       the full run behind docs/benchmarks.md
#   BATCH=32 cluster/bench-queue.sh          consumers take up to 32 messages per receive
#
# What it does:
#   1. builds target/release/cairn with `--features nats-bench`;
#   2. starts a 3-node cairn cluster (gRPC 127.0.0.1:7630-7632, HTTP 7730-7732) and
#      a 3-node NATS JetStream cluster (clients 127.0.0.1:4230-4232, routes
#      6230-6232, monitoring 8230-8232; `-js -sd <dir>`, NATS's default fsync
#      policy). If the nats-server accepts `jetstream { sync_interval: always }`
#      (2.10 and later; Debian 12's 2.9.10 does not), also a second NATS cluster
#      with it (clients 4240-4242, routes 6240-6242, monitoring 8240-8242), the
#      "nats-sync" system. Each node has its own data directory under one temp
#      directory;
#   3. runs producers = consumers = {1, 64}, 256-byte messages, receives of up to
#      BATCH messages, DURATION seconds per cell, against: cairn popping, cairn
#      leasing then acking, NATS, and nats-sync if there is one; the order of
#      the systems rotates from one cell to the next so that drift (page cache,
#      disk, the other load on the machine) falls on all alike;
#   4. appends every report (one JSON line each) to the results file and prints
#      the table, also written next to it as .md;
#   5. on exit, however it exits, stops the processes it started (by pid) and
#      removes its temp directory.
#
# Environment:
#   CAIRN_BIN     measure this cairn binary (built with --features nats-bench)
#                 instead of building target/release/cairn
#   DURATION      seconds per cell and system (default 10)
#   BATCH         messages one receive may take, 1 to 256 (default 1): passed as
#                 `--batch` to every cell (cairn's max_messages, NATS's fetch size)
#   RESULTS       results file (default target/bench/queue-<UTC time>.jsonl);
#                 appended to, so a file from an earlier run gets the new lines too
#   NATS_BIN      nats-server binary (default: `nats-server` on PATH)
#   TMPDIR        where the temp directory goes (default /tmp); put it on the disk
#                 you mean to measure: both systems write there
#
# If nats-server or curl is missing and this runs as root, it installs the Debian
# packages nats-server and curl; otherwise it says what to install. Only loopback
# addresses are used. Every wait is bounded.
set -euo pipefail

readonly NODES=3
readonly CAIRN_GRPC_PORT_BASE=7630
readonly CAIRN_HTTP_PORT_BASE=7730
readonly NATS_CLIENT_PORT_BASE=4230
readonly NATS_ROUTE_PORT_BASE=6230
readonly NATS_HTTP_PORT_BASE=8230
# The sync-always NATS cluster's ports are these plus 10.
readonly NATS_SYNC_PORT_OFFSET=10
readonly MESSAGE_SIZE_BYTES=256
readonly TASK_COUNTS=(1 64)
# The lease of cairn's lease-ack mode and NATS's ack wait (NATS's default, 30 s).
readonly LEASE_MS=30000
readonly UP_WAIT_SECS=30
readonly STOP_WAIT_SECS=10
# A cell gets DURATION plus this for connecting and setting up the queue/stream.
readonly CELL_SLACK_SECS=120

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
duration_secs="${DURATION:-10}"
[[ "$duration_secs" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "bench-queue.sh: DURATION must be a number of seconds" >&2; exit 2; }
batch="${BATCH:-1}"
[[ "$batch" =~ ^[0-9]+$ ]] && (( batch >= 1 && batch <= 256 )) || { echo "bench-queue.sh: BATCH must be a whole number from 1 to 256" >&2; exit 2; }

SCRIPT_NAME=bench-queue.sh
# shellcheck source=cluster/bench-lib.sh
source "$root/cluster/bench-lib.sh"

nats_bin="${NATS_BIN:-nats-server}"
missing=()
command -v "$nats_bin" >/dev/null || missing+=(nats-server)
command -v curl >/dev/null || missing+=(curl)
if (( ${#missing[@]} > 0 )); then
  install_debian_packages "${missing[@]}"
fi
command -v "$nats_bin" >/dev/null || die "no nats-server binary ($nats_bin)"
nats_version="$("$nats_bin" --version | awk '{ print $2 }')"

cairn_binary nats-bench

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
for (( i = 0; i < NODES; i++ )); do
  for port in $(( CAIRN_GRPC_PORT_BASE + i )) $(( CAIRN_HTTP_PORT_BASE + i )) \
    $(( NATS_CLIENT_PORT_BASE + i )) $(( NATS_ROUTE_PORT_BASE + i )) $(( NATS_HTTP_PORT_BASE + i )) \
    $(( NATS_CLIENT_PORT_BASE + NATS_SYNC_PORT_OFFSET + i )) \
    $(( NATS_ROUTE_PORT_BASE + NATS_SYNC_PORT_OFFSET + i )) \
    $(( NATS_HTTP_PORT_BASE + NATS_SYNC_PORT_OFFSET + i )); do
    if port_in_use "$port"; then
      die "127.0.0.1:$port is already in use; stop whatever listens there first"
    fi
  done
done

results="${RESULTS:-$root/target/bench/queue-$(date -u +%Y%m%dT%H%M%SZ).jsonl}"
mkdir -p "$(dirname "$results")"
tmp_dir="$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench-queue.XXXXXX")"

# A private copy: a `cargo build --release` without the feature, run by someone else
# meanwhile, would replace target/release/cairn with one that cannot load NATS.
bin="$tmp_dir/cairn"
cp "$built_bin" "$bin"
if timeout 10 "$bin" bench queue --target nats --endpoints 127.0.0.1:9 \
  --duration 0 2>&1 | grep -q -- '--features nats-bench'; then
  die "$built_bin was built without --features nats-bench (did another build replace it?); run again"
fi

# Whether this nats-server has a per-message fsync option: `-t` checks a config
# and exits; 2.9 rejects the unknown field.
sync_conf="$tmp_dir/nats-sync.conf"
printf 'jetstream {\n  sync_interval: always\n}\n' > "$sync_conf"
nats_sync=0
if timeout 10 "$nats_bin" -c "$sync_conf" -t >/dev/null 2>&1; then
  nats_sync=1
  log "nats-server $nats_version accepts sync_interval: always; running nats-sync too"
else
  log "nats-server $nats_version has no sync_interval option (2.10+); NATS runs with its default only"
fi

# --- the clusters ----------------------------------------------------------------------
start_cairn_cluster
declare -A system_pids
system_pids[cairn]="${cairn_pids[*]}"

# start_nats NAME PORT_OFFSET [CONFIG]: a 3-node JetStream cluster; prints its
# client endpoints.
start_nats() {
  local name="$1" offset="$2" conf="${3:-}" routes="" endpoints="" i dir
  for (( i = 1; i <= NODES; i++ )); do
    routes+="${routes:+,}nats://127.0.0.1:$(( NATS_ROUTE_PORT_BASE + offset + i - 1 ))"
    endpoints+="${endpoints:+,}127.0.0.1:$(( NATS_CLIENT_PORT_BASE + offset + i - 1 ))"
  done
  for (( i = 1; i <= NODES; i++ )); do
    dir="$tmp_dir/$name$i"
    mkdir -p "$dir"
    "$nats_bin" ${conf:+-c "$conf"} \
      --server_name "$name$i" \
      -a 127.0.0.1 -p "$(( NATS_CLIENT_PORT_BASE + offset + i - 1 ))" \
      -m "$(( NATS_HTTP_PORT_BASE + offset + i - 1 ))" \
      -js -sd "$dir/data" \
      --cluster_name "cairn-bench-$name" \
      --cluster "nats://127.0.0.1:$(( NATS_ROUTE_PORT_BASE + offset + i - 1 ))" \
      --routes "$routes" \
      > "$dir/node.log" 2>&1 < /dev/null &
    pids+=("$!")
    system_pids[$name]+="${system_pids[$name]:+ }$!"
  done
  nats_endpoints[$name]="$endpoints"
  nats_http_base[$name]=$(( NATS_HTTP_PORT_BASE + offset ))
}

declare -A nats_endpoints nats_http_base
start_nats nats 0
if (( nats_sync == 1 )); then
  start_nats natssync "$NATS_SYNC_PORT_OFFSET" "$sync_conf"
fi
log "started cairn ($cairn_endpoints) and NATS (${nats_endpoints[*]}) under $tmp_dir; pids ${pids[*]}"

# Every node healthy and the JetStream meta group has a leader.
nats_ready() {
  local base="$1" i health jsz
  for (( i = 0; i < NODES; i++ )); do
    health="$(curl -s --max-time 2 "http://127.0.0.1:$(( base + i ))/healthz" || true)"
    [[ "$health" == *'"ok"'* ]] || return 1
  done
  jsz="$(curl -s --max-time 2 "http://127.0.0.1:$base/jsz" || true)"
  [[ "$jsz" =~ \"leader\":\ *\"[^\"]+\" ]]
}

deadline=$(( SECONDS + UP_WAIT_SECS ))
cairn_up=0 nats_up=0 natssync_up=$(( 1 - nats_sync ))
while (( cairn_up == 0 || nats_up == 0 || natssync_up == 0 )); do
  all_alive || die "a node exited while starting"
  (( SECONDS < deadline )) || die "clusters not ready after ${UP_WAIT_SECS}s (cairn: $cairn_up, nats: $nats_up, nats-sync: $natssync_up)"
  (( cairn_up == 1 )) || { cairn_ready && cairn_up=1 && log "cairn has a leader"; } || true
  (( nats_up == 1 )) || { nats_ready "${nats_http_base[nats]}" && nats_up=1 && log "NATS has a JetStream leader"; } || true
  (( natssync_up == 1 )) || { nats_ready "${nats_http_base[natssync]}" && natssync_up=1 && log "NATS (sync always) has a JetStream leader"; } || true
  (( cairn_up == 1 && nats_up == 1 && natssync_up == 1 )) || sleep 0.5
done

# --- the matrix ----------------------------------------------------------------------
cell_timeout_secs="$(awk -v d="$duration_secs" -v s="$CELL_SLACK_SECS" 'BEGIN { printf "%d", d + s + 1 }')"
failures=0
runs=0

# Systems as "label target endpoints-key lease"; the label goes into the results.
systems=("cairn-pop cairn cairn -" "cairn-lease cairn cairn $LEASE_MS" "nats nats nats $LEASE_MS")
(( nats_sync == 0 )) || systems+=("nats-sync nats natssync $LEASE_MS")

run_cell() {
  local label="$1" target="$2" key="$3" lease="$4" tasks="$5" endpoints line
  if [[ "$key" == cairn ]]; then endpoints="$cairn_endpoints"; else endpoints="${nats_endpoints[$key]}"; fi
  local args=(bench queue --target "$target" --endpoints "$endpoints"
    --producers "$tasks" --consumers "$tasks" --duration "$duration_secs"
    --size "$MESSAGE_SIZE_BYTES" --batch "$batch" --json)
  [[ "$lease" == - ]] || args+=(--lease-ms "$lease")
  runs=$(( runs + 1 ))
  local server_pids cpu_before cpu_after sent received
  read -r -a server_pids <<< "${system_pids[$key]}"
  cpu_before="$(cpu_secs "${server_pids[@]}")"
  # RUST_LOG=warn: the NATS client logs every connection at info.
  if line="$(RUST_LOG=warn timeout "$cell_timeout_secs" "$bin" "${args[@]}")"; then
    cpu_after="$(cpu_secs "${server_pids[@]}")"
    # CPU per message moved: per send plus receive.
    sent="$(awk "$AWK_REPORT_FUNCTIONS"' { print field($0, "send_ops") + field($0, "receive_ops") }' <<< "$line")"
    line="${line%\}},\"messages_moved\":$sent}"
    line="$(with_server_cpu "$line" "$(awk -v a="$cpu_before" -v b="$cpu_after" 'BEGIN { printf "%.2f", b - a }')" "$label" messages_moved)"
    line="{\"system\":\"$label\",${line#\{}"
    echo "$line" >> "$results"
    log "$line"
  else
    log "FAILED: $label producers=consumers=$tasks"
    failures=$(( failures + 1 ))
  fi
}

log "running ${#TASK_COUNTS[@]} cells x ${#systems[@]} systems, ${duration_secs}s each, batch $batch; results in $results"
cell=0
for tasks in "${TASK_COUNTS[@]}"; do
  all_alive || die "a node exited during the run"
  # Rotate the order of the systems from one cell to the next.
  for (( s = 0; s < ${#systems[@]}; s++ )); do
    read -r label target key lease <<< "${systems[$(( (s + cell) % ${#systems[@]} ))]}"
    run_cell "$label" "$target" "$key" "$lease" "$tasks"
  done
  cell=$(( cell + 1 ))
done

# --- the table -----------------------------------------------------------------------
# Reads the JSON lines of this run (the last line per system and cell wins) with
# awk alone: the reports are flat objects with fixed field names. Ratios are
# against "nats" (JetStream with its default fsync policy).
table() {
  awk "$AWK_REPORT_FUNCTIONS"'
    {
      s = field($0, "system"); n = field($0, "producers")
      if (!(n in seen_n)) { seen_n[n] = 1; ns[++n_count] = n }
      if (!(s in seen_s)) { seen_s[s] = 1; ss[++s_count] = s }
      k = s SUBSEP n
      has[k] = 1; mode[k] = field($0, "mode"); batch[k] = field($0, "batch")
      sops[k] = field($0, "send_ops_per_sec"); sp50[k] = field($0, "send_latency_ms_p50")
      sp99[k] = field($0, "send_latency_ms_p99"); serr[k] = field($0, "send_errors")
      rops[k] = field($0, "receive_ops_per_sec"); rp50[k] = field($0, "receive_latency_ms_p50")
      rp99[k] = field($0, "receive_latency_ms_p99"); rerr[k] = field($0, "receive_errors")
      backlog[k] = field($0, "backlog_messages"); cpu[k] = field($0, "server_cpu_us_per_op")
    }
    END {
      print "| producers = consumers | system | mode | batch | send ops/s | send p50 ms | send p99 ms | receive ops/s | receive p50 ms | receive p99 ms | backlog at end | errors send / receive | send ops/s vs nats | receive ops/s vs nats | server CPU µs per message sent or received | CPU vs nats |"
      print "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
      for (i = 1; i <= n_count; i++) {
        n = ns[i]; ref = "nats" SUBSEP n
        for (j = 1; j <= s_count; j++) {
          k = ss[j] SUBSEP n
          if (!has[k]) { printf "| %s | %s | failed | | | | | | | | | | | | | |\n", n, ss[j]; continue }
          printf "| %s | %s | %s | %s | %.0f | %.2f | %.2f | %.0f | %.2f | %.2f | %s | %s / %s | %s | %s | %s | %s |\n", \
            n, ss[j], mode[k], batch[k], sops[k], sp50[k], sp99[k], rops[k], rp50[k], rp99[k], backlog[k], \
            serr[k], rerr[k], \
            has[ref] ? ratio(sops[k], sops[ref]) : "n/a", has[ref] ? ratio(rops[k], rops[ref]) : "n/a", \
            cpu[k], (has[ref] && cpu[k] != "null") ? ratio(cpu[k], cpu[ref]) : "n/a"
        }
      }
    }
  '
}

table_file="${results%.jsonl}.md"
{
  echo "DURATION=${duration_secs}s per cell, ${MESSAGE_SIZE_BYTES}-byte messages, BATCH=${batch} per receive, 3 nodes each on 127.0.0.1;"
  echo "cairn $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown), nats-server $nats_version$( (( nats_sync == 1 )) && echo ' (nats-sync: sync_interval always)' );"
  echo "$(nproc) cores, $(free -h | awk '/^Mem:/ { print $2 }') memory, data on $(df -h "$tmp_dir" | awk 'NR == 2 { print $1 " (" $2 ")" }')."
  echo
  # Only this run's lines: RESULTS may name a file with older runs in it.
  tail -n "$(( runs - failures ))" "$results" | table
} > "$table_file"
cat "$table_file"
log "results: $results; table: $table_file"
(( failures == 0 )) || die "$failures cell(s) failed"
