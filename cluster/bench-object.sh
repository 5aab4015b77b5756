#!/usr/bin/env bash
# Benchmarks cairn's object storage on this machine against the disk it runs on:
# measures the disk's sequential write bandwidth with fio, then uploads and
# downloads objects through a 3-node cairn cluster (`cairn bench object`), and
# prints a markdown table of put and get MB/s with their ratios to fio.
# docs/benchmarks.md ("Object storage") explains the method and holds the results.
#
#   cluster/bench-object.sh
#
# What it does:
#   1. builds target/release/cairn (default features);
#   2. runs two fio jobs in a directory under the temp directory (so on the file
#      system the nodes will write to), before any node starts: 1 GiB of
#      sequential 1 MiB writes with O_DIRECT ("seqwrite", libaio), and 512 MiB of
#      sequential 1 MiB buffered writes with an fdatasync after each
#      ("seqwrite-fdatasync", psync; cairn syncs every chunk it stores); each is
#      bounded by its size and by FIO_RUNTIME_SECS;
#   3. starts a 3-node cairn cluster (gRPC 127.0.0.1:7650-7652, HTTP 7750-7752),
#      each node with its own data directory under the temp directory, and waits
#      (bounded) for a leader;
#   4. runs `cairn bench object` for 256 objects of 1 MiB with 4 concurrent
#      clients, then 4 objects of 256 MiB with 1 client: each uploads every object
#      (distinct random content, so dedupe cannot help), then downloads each;
#   5. passes the nodes' pids (`--server-pids`), so each report carries the CPU
#      seconds the three servers used per phase and per MiB moved;
#   6. appends every report (one JSON line each, fio's too) to the results file
#      and prints the table, also written next to it as .md;
#   7. on exit, however it exits, stops the processes it started (by pid) and
#      removes its temp directory.
#
# Environment:
#   CAIRN_BIN     measure this cairn binary instead of building target/release/cairn
#   RESULTS       results file (default target/bench/object-<UTC time>.jsonl);
#                 appended to, so a file from an earlier run gets the new lines too
#   TMPDIR        where the temp directory goes (default /tmp); put it on the disk
#                 you mean to measure: fio and the nodes write there
#   CAIRN_BASELINE_BIN  a second cairn binary (e.g. a release build of an older
#                 commit): also started as a 3-node cluster (gRPC 7660-7662, HTTP
#                 7760-7762; the main cluster is stopped meanwhile) and measured in
#                 every cell as the system `cairn-base`, by the same load generator
#
# If fio is missing and this runs as root, it installs the Debian package fio
# (`apt-get install -y fio`); otherwise it says what to install. Only loopback
# addresses are used. Every wait is bounded.
set -euo pipefail

readonly NODES=3
readonly CAIRN_GRPC_PORT_BASE=7650
readonly CAIRN_HTTP_PORT_BASE=7750
readonly BASE_GRPC_PORT_BASE=7660
readonly BASE_HTTP_PORT_BASE=7760
readonly UP_WAIT_SECS=30
readonly STOP_WAIT_SECS=10
# fio jobs stop at their size or after this long, whichever comes first.
readonly FIO_RUNTIME_SECS=60
readonly FIO_TIMEOUT_SECS=180
# Workloads as "size count clients".
readonly CELLS=("1MiB 256 4" "256MiB 4 1")
# A phase (put, get) starts no transfer after this; a cell (both phases, setup
# and cleanup) is killed after CELL_TIMEOUT_SECS.
readonly PHASE_SECS_MAX=300
readonly CELL_TIMEOUT_SECS=900

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

SCRIPT_NAME=bench-object.sh
# shellcheck source=cluster/bench-lib.sh
source "$root/cluster/bench-lib.sh"

command -v fio >/dev/null || install_debian_packages fio
command -v fio >/dev/null || die "no fio binary; apt-get install -y fio"

cairn_binary

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
for (( i = 0; i < NODES; i++ )); do
  for port in $(( CAIRN_GRPC_PORT_BASE + i )) $(( CAIRN_HTTP_PORT_BASE + i )); do
    if port_in_use "$port"; then
      die "127.0.0.1:$port is already in use; stop whatever listens there first"
    fi
  done
done

results="${RESULTS:-$root/target/bench/object-$(date -u +%Y%m%dT%H%M%SZ).jsonl}"
mkdir -p "$(dirname "$results")"
tmp_dir="$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench-object.XXXXXX")"
# A private copy: another `cargo build` meanwhile may replace target/release/cairn.
bin="$tmp_dir/cairn"
cp "$built_bin" "$bin"

# --- fio ------------------------------------------------------------------------------
# run_fio NAME SIZE FIO-ARGS...: one sequential 1 MiB write job in $tmp_dir/fio;
# appends {"fio_job":NAME,"mb_per_sec":…} to the results (MB = 10^6 bytes).
run_fio() {
  local name="$1" size="$2" out bw_bytes line
  shift 2
  mkdir -p "$tmp_dir/fio"
  out="$tmp_dir/fio/$name.json"
  timeout "$FIO_TIMEOUT_SECS" fio --name="$name" --rw=write --bs=1M --size="$size" \
    --numjobs=1 --runtime="$FIO_RUNTIME_SECS" \
    --directory="$tmp_dir/fio" --output-format=json "$@" > "$out" \
    || die "fio $name failed: $(tail -n 5 "$out" 2>/dev/null)"
  # The job's write section holds bw_bytes (bytes per second).
  bw_bytes="$(awk '/"write" : \{/ { w = 1 } w && /"bw_bytes"/ { gsub(/[^0-9]/, "", $3); print $3; exit }' "$out")"
  [[ "$bw_bytes" =~ ^[0-9]+$ ]] || die "no write bandwidth in fio's output ($out)"
  rm -f -- "$tmp_dir/fio/$name".[0-9]*
  line="$(awk -v n="$name" -v b="$bw_bytes" 'BEGIN { printf "{\"fio_job\":\"%s\",\"mb_per_sec\":%.1f}", n, b / 1e6 }')"
  echo "$line" >> "$results"
  log "$line"
}

log "measuring the disk under $tmp_dir with fio (at most ${FIO_RUNTIME_SECS}s per job)"
run_fio seqwrite 1G --direct=1 --ioengine=libaio
# Plain write(2) then fdatasync(2), as a node stores a chunk.
run_fio seqwrite-fdatasync 512M --direct=0 --ioengine=psync --fdatasync=1

# --- the clusters and the cells ----------------------------------------------------------
# One cluster runs at a time: uploads are CPU- and disk-bound, and an idle cluster
# beside the one measured would still cost heartbeats.
systems=(cairn)
[[ -n "${CAIRN_BASELINE_BIN:-}" ]] && systems+=(cairn-base)
if [[ -n "${CAIRN_BASELINE_BIN:-}" ]]; then
  [[ -x "$CAIRN_BASELINE_BIN" ]] || die "CAIRN_BASELINE_BIN=$CAIRN_BASELINE_BIN is not an executable"
  cp "$CAIRN_BASELINE_BIN" "$tmp_dir/cairn-base"
fi
failures=0
runs=0
stop_cluster() {
  local pid
  for pid in "${cairn_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${cairn_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
for system in "${systems[@]}"; do
  if [[ "$system" == cairn ]]; then
    start_cairn_cluster
  else
    start_cairn_cluster "$tmp_dir/cairn-base" "$BASE_GRPC_PORT_BASE" "$BASE_HTTP_PORT_BASE" base
  fi
  log "started $system ($cairn_endpoints) under $tmp_dir; pids ${cairn_pids[*]}"
  deadline=$(( SECONDS + UP_WAIT_SECS ))
  until cairn_ready; do
    all_alive || die "a node exited while starting"
    (( SECONDS < deadline )) || die "$system has no leader after ${UP_WAIT_SECS}s"
    sleep 0.5
  done
  log "$system has a leader"
  server_pids="$(IFS=,; echo "${cairn_pids[*]}")"
  for cell in "${CELLS[@]}"; do
    read -r size count clients <<< "$cell"
    all_alive || die "a node exited during the run"
    log "bench object ($system): $count x $size, $clients client(s)"
    runs=$(( runs + 1 ))
    if line="$(timeout "$CELL_TIMEOUT_SECS" "$bin" bench object --endpoints "$cairn_endpoints" \
      --size "$size" --count "$count" --clients "$clients" \
      --phase-secs-max "$PHASE_SECS_MAX" --server-pids "$server_pids" --json)"; then
      line="${line%\}},\"system\":\"$system\"}"
      echo "$line" >> "$results"
      log "$line"
    else
      log "FAILED ($system): $count x $size, $clients client(s)"
      failures=$(( failures + 1 ))
    fi
  done
  stop_cluster
  # Stopped: all_alive checks only the running cluster.
  pids=()
done

# --- the table -----------------------------------------------------------------------
# Reads this run's JSON lines with awk alone: the reports are flat objects with
# fixed field names. Ratios are against the fio jobs of the same run.
table() {
  awk "$AWK_REPORT_FUNCTIONS"'
    function mib(bytes) { return (bytes % 1048576 == 0) ? (bytes / 1048576) " MiB" : bytes " B" }
    /"fio_job"/ { fio[field($0, "fio_job")] = field($0, "mb_per_sec"); next }
    { rows[++n] = $0 }
    END {
      d = fio["seqwrite"]; s = fio["seqwrite-fdatasync"]
      print "| fio job (1 MiB sequential writes) | MB/s |"
      print "|---|---:|"
      printf "| `seqwrite`: O_DIRECT | %.1f |\n", d
      printf "| `seqwrite-fdatasync`: buffered, fdatasync after each write | %.1f |\n", s
      print ""
      print "| system | objects | clients | put MB/s | get MB/s | put / fio seqwrite | put / fio fdatasync | get / fio seqwrite | put p50 ms | put p99 ms | get p50 ms | get p99 ms | server CPU ms/MiB put / get | chunks sent / total | errors put / get |"
      print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
      for (i = 1; i <= n; i++) {
        r = rows[i]; put = field(r, "put_mb_per_sec"); get = field(r, "get_mb_per_sec")
        sys = field(r, "system"); if (sys == "") sys = "cairn"
        printf "| %s | %s x %s | %s | %.1f | %.1f | %s | %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f / %.1f | %s / %s | %s / %s |\n", \
          sys, field(r, "count"), mib(field(r, "object_size_bytes")), field(r, "clients"), put, get, \
          ratio(put, d), ratio(put, s), ratio(get, d), \
          field(r, "put_latency_ms_p50"), field(r, "put_latency_ms_p99"), \
          field(r, "get_latency_ms_p50"), field(r, "get_latency_ms_p99"), \
          field(r, "put_server_cpu_ms_per_mib"), field(r, "get_server_cpu_ms_per_mib"), \
          field(r, "put_chunks_sent"), field(r, "put_chunks_total"), \
          field(r, "put_errors"), field(r, "get_errors")
      }
    }
  '
}

table_file="${results%.jsonl}.md"
{
  echo "3 nodes on 127.0.0.1, cairn $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown), $(fio --version);"
  echo "$(nproc) cores, $(free -h | awk '/^Mem:/ { print $2 }') memory, data on $(df -h "$tmp_dir" | awk 'NR == 2 { print $1 " (" $2 ")" }'). MB = 10^6 bytes."
  echo
  # Only this run's lines: RESULTS may name a file with older runs in it.
  tail -n "$(( 2 + runs - failures ))" "$results" | table
} > "$table_file"
cat "$table_file"
log "results: $results; table: $table_file"
(( failures == 0 )) || die "$failures cell(s) failed"
