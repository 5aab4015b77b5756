#!/usr/bin/env bash
# Measures how a cairn node's memory grows with its data: loads KEYS keys into a
# `--dev` node, restarts it, then adds a second node as a learner and lets it catch
# up (snapshot transfer, install, log replay), sampling every node's RSS once a
# second. Prints a markdown table per size; docs/benchmarks.md ("Memory as the
# data grows") explains the method and holds the results.
#
#   cluster/bench-growth.sh                          1,000,000 keys of 256 B
#   SIZES="10000 100000 1000000" cluster/bench-growth.sh   one fresh run per size
#   HEAPTRACK=2 cluster/bench-growth.sh              the learner under heaptrack
#
# What it does, per size (each from empty data directories):
#   1. builds target/release/cairn (unless CAIRN_BIN names a binary) and copies it
#      into the temp directory;
#   2. starts node 1 with `--dev` (gRPC 127.0.0.1:7861, peer 7871, HTTP 7881) and
#      waits (bounded) until it leads;
#   3. phase "load": `cairn bench kv --op fill` puts every key once (CLIENTS
#      closed-loop clients, VALUE_SIZE-byte values), bounded by LOAD_SECS_MAX; the
#      node builds snapshots by its own policy meanwhile (every
#      snapshot_log_entries entries); then waits (bounded) for a build in flight;
#   4. phase "restart": SIGTERM to node 1, waits for its exit, starts it again on
#      its data and times it until it leads and answers a read ("restart to ready");
#   5. phase "learner": starts node 2 (gRPC 7862, peer 7872, HTTP 7882) with node
#      1's cluster secret, `cairn cluster add-learner 2`, then `cairn cluster
#      wait-ready 2` (bounded by CATCHUP_SECS_MAX): node 2 receives node 1's
#      snapshot, installs it and replays the log after it ("catch-up time");
#   6. phase "idle": HOLD_SECS more seconds of samples (what RSS stays at);
#   7. appends one JSON line per size to the results file and prints the table,
#      also written next to it as .md; keeps the RSS samples beside it
#      (growth-<time>-<keys>.samples.tsv);
#   8. on exit, however it exits, stops the processes it started (by pid) and
#      removes its temp directory.
#
# Memory figures: VmRSS from /proc/<pid>/status, sampled every SAMPLE_SECS, and
# VmHWM (the kernel's exact peak RSS), reset through /proc/<pid>/clear_refs at
# each phase start so that each phase's peak is its own (resetting needs root, or
# owning the process; without it the peaks are cumulative). Within a phase, the
# samples are tagged by what the node is doing, seen from outside: "build" while
# node 1's snapshots/building.snap exists, "receive" / "install" / "replay" on
# node 2 by its log lines ("installing snapshot", "installed snapshot"); a tag's
# peak is its highest 1-second sample (a spike between samples shows only in the
# phase's VmHWM). MiB are 2^20 bytes.
#
# Environment:
#   SIZES            key counts, one run each (default 1000000)
#   VALUE_SIZE       bytes per value (default 256)
#   CLIENTS          load clients (default 64)
#   LOAD_SECS_MAX    longest the load may take (default 900)
#   CATCHUP_SECS_MAX longest the learner may take to catch up (default 900)
#   HOLD_SECS        seconds of samples after the catch-up (default 15)
#   SAMPLE_SECS      sampling interval (default 1)
#   HEAPTRACK        a node to run under heaptrack: 2 (the learner), or 1 (the
#                    loaded node's first start: the load and its snapshot builds);
#                    keeps the data file beside the results and summarises it with
#                    heaptrack_print (…-<keys>.heaptrack.txt); slows that node down
#   NODE_ENV         extra environment for both nodes, e.g. "MALLOC_ARENA_MAX=2"
#   CAIRN_BIN        cairn binary to use instead of building one
#   RESULTS          results file (default target/bench/growth-<UTC time>.jsonl);
#                    appended to
#   TMPDIR           where the temp directory goes (default /tmp): both nodes'
#                    data directories are there
#
# Only loopback addresses are used. Every wait is bounded.
set -euo pipefail

readonly NODE1_GRPC=127.0.0.1:7861 NODE1_PEER=127.0.0.1:7871 NODE1_HTTP=127.0.0.1:7881
readonly NODE2_GRPC=127.0.0.1:7862 NODE2_PEER=127.0.0.1:7872 NODE2_HTTP=127.0.0.1:7882
readonly UP_WAIT_SECS=60
readonly STOP_WAIT_SECS=60
readonly RESTART_WAIT_SECS=120
# Longest to wait for a snapshot build in flight after the load.
readonly BUILD_WAIT_SECS=300
# Longest heaptrack may take to write its file after its node stops.
readonly HEAPTRACK_WAIT_SECS=300
readonly MIB_KIB=1024

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sizes="${SIZES:-1000000}"
value_size="${VALUE_SIZE:-256}"
clients="${CLIENTS:-64}"
load_secs_max="${LOAD_SECS_MAX:-900}"
catchup_secs_max="${CATCHUP_SECS_MAX:-900}"
hold_secs="${HOLD_SECS:-15}"
sample_secs="${SAMPLE_SECS:-1}"
heaptrack="${HEAPTRACK:-0}"
node_env="${NODE_ENV:-}"
for n in $sizes "$value_size" "$clients" "$load_secs_max" "$catchup_secs_max" "$hold_secs"; do
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "bench-growth.sh: '$n' is not a whole number" >&2; exit 2; }
done

SCRIPT_NAME=bench-growth.sh
# shellcheck source=cluster/bench-lib.sh
source "$root/cluster/bench-lib.sh"

[[ "$heaptrack" =~ ^[012]$ ]] || { echo "bench-growth.sh: HEAPTRACK is 0, 1 or 2" >&2; exit 2; }
if [[ "$heaptrack" != 0 ]]; then
  command -v heaptrack >/dev/null && command -v heaptrack_print >/dev/null \
    || install_debian_packages heaptrack
fi

if [[ -n "${CAIRN_BIN:-}" ]]; then
  built_bin="$CAIRN_BIN"
else
  log "building cairn (cargo build --release)"
  (cd "$root" && cargo build --quiet --release --bin cairn) >&2
  built_bin="${CARGO_TARGET_DIR:-$root/target}/release/cairn"
fi
[[ -x "$built_bin" ]] || die "no cairn binary at $built_bin"

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
for addr in $NODE1_GRPC $NODE1_PEER $NODE1_HTTP $NODE2_GRPC $NODE2_PEER $NODE2_HTTP; do
  if port_in_use "${addr##*:}"; then
    die "$addr is already in use; stop whatever listens there first"
  fi
done

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
results="${RESULTS:-$root/target/bench/growth-$stamp.jsonl}"
mkdir -p "$(dirname "$results")"
results_base="${results%.jsonl}"
tmp_dir="$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench-growth.XXXXXX")"
bin="$tmp_dir/cairn"
cp "$built_bin" "$bin"

now_ms() { date +%s%3N; }
secs_since() { awk -v a="$1" -v b="$(now_ms)" 'BEGIN { printf "%.2f", (b - a) / 1000 }'; }

# proc_kib PID FIELD: VmRSS or VmHWM of PID in KiB (0 if it is gone).
proc_kib() {
  local status
  status="$(cat "/proc/$1/status" 2>/dev/null || true)"
  awk -v f="$2:" '$1 == f { print $2; found = 1 } END { if (!found) print 0 }' <<< "$status"
}

# The pid of each node's cairn process, as files (the sampler reads them; a
# restart or heaptrack changes them).
node_pid() { cat "$tmp_dir/node$1.pid" 2>/dev/null || true; }

# note_peak I: records node I's VmHWM for the current phase (in $tmp_dir/peaks:
# phase, node, KiB), so a phase shorter than a sample still has its peak.
note_peak() {
  local pid
  pid="$(node_pid "$1")"
  [[ -n "$pid" ]] || return 0
  printf '%s\t%s\t%s\n' "$(cat "$tmp_dir/phase" 2>/dev/null || echo -)" "$1" \
    "$(proc_kib "$pid" VmHWM)" >> "$tmp_dir/peaks"
}

# set_phase NAME: the current phase ends (its peaks noted); each running node's
# VmHWM restarts from its RSS for the next.
set_phase() {
  local i pid
  for i in 1 2; do
    pid="$(node_pid "$i")"
    [[ -n "$pid" ]] || continue
    note_peak "$i"
    echo 5 > "/proc/$pid/clear_refs" 2>/dev/null || true
  done
  echo "$1" > "$tmp_dir/phase"
  log "phase $1"
}

# tag_of NODE: what the node is doing, as seen from outside (see the header).
tag_of() {
  local dir="$tmp_dir/node$1"
  if [[ "$1" == 1 ]]; then
    [[ -e "$dir/data/snapshots/building.snap" ]] && { echo build; return; }
    echo -
  else
    if grep -q "installed snapshot" "$dir/node.log" 2>/dev/null; then
      echo replay
    elif grep -q "installing snapshot" "$dir/node.log" 2>/dev/null; then
      echo install
    else
      echo receive
    fi
  fi
}

# sampler FILE: every SAMPLE_SECS, one line per running node:
# ms, phase, node, pid, VmRSS KiB, VmHWM KiB, tag. Runs until killed.
sampler() {
  local out="$1" t phase i pid
  while :; do
    t="$(now_ms)"
    phase="$(cat "$tmp_dir/phase" 2>/dev/null || echo -)"
    for i in 1 2; do
      pid="$(node_pid "$i")"
      [[ -n "$pid" && -r "/proc/$pid/status" ]] || continue
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$phase" "$i" "$pid" \
        "$(proc_kib "$pid" VmRSS)" "$(proc_kib "$pid" VmHWM)" "$(tag_of "$i")" >> "$out"
    done
    sleep "$sample_secs"
  done
}

# start_node I [extra server args...]: starts node I (appending to its log) and
# records its pid; node HEAPTRACK runs under heaptrack (node 1 on its first start).
start_node() {
  local i="$1" dir="$tmp_dir/node$1" grpc peer http launcher=() pid child deadline
  shift
  if [[ "$i" == 1 ]]; then grpc=$NODE1_GRPC peer=$NODE1_PEER http=$NODE1_HTTP
  else grpc=$NODE2_GRPC peer=$NODE2_PEER http=$NODE2_HTTP; fi
  mkdir -p "$dir"
  if [[ "$i" == "$heaptrack" && ! -e "$heaptrack_file.started" ]]; then
    touch "$heaptrack_file.started"
    launcher=(heaptrack -o "$heaptrack_file")
  fi
  # shellcheck disable=SC2086 # NODE_ENV is a list of NAME=VALUE words
  env NO_COLOR=1 $node_env "${launcher[@]}" "$bin" server --id "$i" --data-dir "$dir/data" \
    --grpc-addr "$grpc" --peer-addr "$peer" --http-addr "$http" "$@" \
    >> "$dir/node.log" 2>&1 < /dev/null &
  pid=$!
  pids+=("$pid")
  if (( ${#launcher[@]} > 0 )); then
    # heaptrack runs cairn as its child: that is the process to sample and stop.
    deadline=$(( SECONDS + UP_WAIT_SECS ))
    child=""
    while [[ -z "$child" ]]; do
      child="$(pgrep -P "$pid" -x cairn || true)"
      [[ -n "$child" ]] && break
      (( SECONDS < deadline )) || die "no cairn process under heaptrack (pid $pid)"
      sleep 0.2
    done
    pids+=("$child")
    echo "$child" > "$tmp_dir/node$i.pid"
    echo "$pid" > "$dir/launcher.pid"
  else
    echo "$pid" > "$tmp_dir/node$i.pid"
    echo "$pid" > "$dir/launcher.pid"
  fi
}

# stop_node I: SIGTERM to node I's cairn process, then waits (bounded) for it and
# its launcher to exit.
stop_node() {
  local i="$1" pid launcher deadline
  pid="$(node_pid "$i")"
  launcher="$(cat "$tmp_dir/node$i/launcher.pid")"
  note_peak "$i"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$(( SECONDS + STOP_WAIT_SECS ))
  while kill -0 "$pid" 2>/dev/null; do
    (( SECONDS < deadline )) || die "node $i (pid $pid) still running ${STOP_WAIT_SECS}s after SIGTERM"
    sleep 0.1
  done
  # heaptrack writes its file after cairn exits.
  deadline=$(( SECONDS + HEAPTRACK_WAIT_SECS ))
  while kill -0 "$launcher" 2>/dev/null; do
    (( SECONDS < deadline )) || die "launcher of node $i (pid $launcher) still running"
    sleep 0.2
  done
  wait "$launcher" 2>/dev/null || true
  rm -f "$tmp_dir/node$i.pid"
}

# nodes_alive: every node that should run does (bench-lib's all_alive also counts
# the stopped ones).
nodes_alive() {
  local i pid
  for i in 1 2; do
    [[ -f "$tmp_dir/node$i.pid" ]] || continue
    pid="$(node_pid "$i")"
    kill -0 "$pid" 2>/dev/null || { log "node $i (pid $pid) exited"; return 1; }
  done
}

# leads_and_reads: node 1 leads and answers a linearizable read.
leads_and_reads() {
  cairn_ready "$NODE1_GRPC" \
    && timeout 5 "$bin" kv get bench key-00000000 --endpoints "$NODE1_GRPC" >/dev/null 2>&1
}

# peak_kib SAMPLES NODE PHASE COLUMN [TAG]: highest value of COLUMN (5 = VmRSS,
# 6 = VmHWM, which also takes the peaks noted at phase ends) among NODE's samples
# in PHASE (and with TAG); 0 if none.
peak_kib() {
  local noted=0
  if [[ "$4" == 6 && -f "$tmp_dir/peaks" ]]; then
    noted="$(awk -F'\t' -v n="$2" -v p="$3" '$2 == n && $1 == p && $3 + 0 > m { m = $3 + 0 }
      END { print m + 0 }' "$tmp_dir/peaks")"
  fi
  awk -F'\t' -v n="$2" -v p="$3" -v c="$4" -v t="${5:-}" -v m="$noted" '
    $3 == n && $2 == p && (t == "" || $7 == t) && $c + 0 > m { m = $c + 0 }
    END { print m + 0 }' "$1"
}
# last_kib SAMPLES NODE COLUMN: NODE's last sample of COLUMN.
last_kib() {
  awk -F'\t' -v n="$2" -v c="$3" '$3 == n { v = $c } END { print v + 0 }' "$1"
}
mib() { awk -v k="$1" -v d="$MIB_KIB" 'BEGIN { printf "%.0f", k / d }'; }

# log_field LOG MESSAGE FIELD: FIELD=value of the last LOG line with MESSAGE.
log_field() {
  grep -a "$2" "$1" | tail -n 1 | grep -ao "$3=[0-9]*" | tail -n 1 | cut -d= -f2 || true
}

run_size() {
  local keys="$1" samples="$results_base-$1.samples.tsv" sampler_pid started report
  local load_ops load_secs load_rate load_errors deadline restart_s catchup_s
  local snap_bytes snap_ms snap_count heaptrack_txt=""
  heaptrack_file="$results_base-$keys.heaptrack"
  rm -rf "$tmp_dir/node1" "$tmp_dir/node2" "$tmp_dir/phase" "$tmp_dir/peaks"
  : > "$samples"
  log "--- $keys keys of $value_size B"

  echo start > "$tmp_dir/phase"
  start_node 1 --dev
  sampler "$samples" &
  sampler_pid=$!
  pids+=("$sampler_pid")
  deadline=$(( SECONDS + UP_WAIT_SECS ))
  until cairn_ready "$NODE1_GRPC"; do
    nodes_alive || die "node 1 exited"
    (( SECONDS < deadline )) || die "node 1 does not lead after ${UP_WAIT_SECS}s"
    sleep 0.5
  done

  # 3. Load.
  set_phase load
  started="$(now_ms)"
  report="$(timeout $(( load_secs_max + 60 )) "$bin" bench kv --op fill --keys "$keys" \
    --clients "$clients" --value-size "$value_size" --duration "$load_secs_max" --json \
    --endpoints "$NODE1_GRPC")" || die "the load failed"
  load_secs="$(secs_since "$started")"
  load_ops="$(awk "$AWK_REPORT_FUNCTIONS"' { print field($0, "ops") + 0 }' <<< "$report")"
  load_errors="$(awk "$AWK_REPORT_FUNCTIONS"' { print field($0, "errors") + 0 }' <<< "$report")"
  load_rate="$(awk -v n="$load_ops" -v s="$load_secs" 'BEGIN { printf "%.0f", n / s }')"
  (( load_ops == keys )) || die "the load wrote $load_ops of $keys keys ($load_errors errors) in ${load_secs}s"
  log "loaded $load_ops keys in ${load_secs}s ($load_rate puts/s)"
  deadline=$(( SECONDS + BUILD_WAIT_SECS ))
  while [[ -e "$tmp_dir/node1/data/snapshots/building.snap" ]]; do
    (( SECONDS < deadline )) || die "a snapshot build still runs ${BUILD_WAIT_SECS}s after the load"
    sleep 0.5
  done
  snap_count="$(grep -ac "built snapshot" "$tmp_dir/node1/node.log" || true)"
  snap_bytes="$(stat -c %s "$tmp_dir/node1/data/snapshots/current.snap" 2>/dev/null || echo 0)"
  snap_ms="$(log_field "$tmp_dir/node1/node.log" "built snapshot" build_ms)"

  # 4. Restart the loaded node (its stop still counts to the load).
  stop_node 1
  set_phase restart
  started="$(now_ms)"
  start_node 1 --dev
  deadline=$(( SECONDS + RESTART_WAIT_SECS ))
  until leads_and_reads; do
    nodes_alive || die "node 1 exited after its restart"
    (( SECONDS < deadline )) || die "node 1 not serving ${RESTART_WAIT_SECS}s after its restart"
    sleep 0.05
  done
  restart_s="$(secs_since "$started")"
  log "node 1 serves again ${restart_s}s after its start"

  # 5. The learner.
  set_phase learner
  start_node 2 --peers "1=$NODE1_PEER,2=$NODE2_PEER" \
    --cluster-secret-file "$tmp_dir/node1/data/cluster.secret"
  started="$(now_ms)"
  deadline=$(( SECONDS + UP_WAIT_SECS ))
  until timeout 10 "$bin" cluster add-learner 2 "$NODE2_GRPC" --http-addr "$NODE2_HTTP" \
    --peer-addr "$NODE2_PEER" --endpoints "$NODE1_GRPC" >&2; do
    nodes_alive || die "a node exited"
    (( SECONDS < deadline )) || die "add-learner kept failing for ${UP_WAIT_SECS}s"
    sleep 1
  done
  timeout $(( catchup_secs_max + 30 )) "$bin" cluster wait-ready 2 --timeout-s "$catchup_secs_max" \
    --endpoints "$NODE1_GRPC" >&2 || die "node 2 did not catch up in ${catchup_secs_max}s"
  catchup_s="$(secs_since "$started")"
  log "node 2 caught up ${catchup_s}s after add-learner"

  # 6. Where it stays.
  set_phase idle
  sleep "$hold_secs"

  kill "$sampler_pid" 2>/dev/null || true
  wait "$sampler_pid" 2>/dev/null || true
  stop_node 2
  stop_node 1
  if [[ "$heaptrack" != 0 ]]; then
    rm -f "$heaptrack_file.started"
    heaptrack_file="$(ls "$heaptrack_file"*.zst "$heaptrack_file"*.gz 2>/dev/null | head -n 1 || true)"
    if [[ -n "$heaptrack_file" ]]; then
      heaptrack_txt="$results_base-$keys.heaptrack.txt"
      heaptrack_print -f "$heaptrack_file" > "$heaptrack_txt" 2>&1 || true
      log "heaptrack: $heaptrack_file, summary in $heaptrack_txt"
    fi
  fi

  local s="$samples"
  printf '{"keys":%s,"value_size_bytes":%s,"clients":%s,"load_secs":%s,"load_puts_per_sec":%s,' \
    "$keys" "$value_size" "$clients" "$load_secs" "$load_rate"
  printf '"snapshots_built":%s,"snapshot_bytes":%s,"snapshot_build_ms":%s,"restart_ready_secs":%s,"catchup_secs":%s,' \
    "${snap_count:-0}" "${snap_bytes:-0}" "${snap_ms:-null}" "$restart_s" "$catchup_s"
  printf '"node1_load_hwm_mib":%s,"node1_build_rss_mib":%s,"node1_restart_hwm_mib":%s,"node1_learner_hwm_mib":%s,' \
    "$(mib "$(peak_kib "$s" 1 load 6)")" "$(mib "$(peak_kib "$s" 1 load 5 build)")" \
    "$(mib "$(peak_kib "$s" 1 restart 6)")" "$(mib "$(peak_kib "$s" 1 learner 6)")"
  printf '"node2_receive_rss_mib":%s,"node2_install_rss_mib":%s,"node2_replay_rss_mib":%s,"node2_learner_hwm_mib":%s,' \
    "$(mib "$(peak_kib "$s" 2 learner 5 receive)")" "$(mib "$(peak_kib "$s" 2 learner 5 install)")" \
    "$(mib "$(peak_kib "$s" 2 learner 5 replay)")" "$(mib "$(peak_kib "$s" 2 learner 6)")"
  printf '"node1_idle_rss_mib":%s,"node2_idle_rss_mib":%s,"node_env":"%s","heaptrack":%s}\n' \
    "$(mib "$(last_kib "$s" 1 5)")" "$(mib "$(last_kib "$s" 2 5)")" "$node_env" "$heaptrack"
}

# Not in a pipeline: run_size must run in this shell, so that the cleanup on exit
# knows every pid it started.
for keys in $sizes; do
  run_size "$keys" > "$tmp_dir/report.json"
  cat "$tmp_dir/report.json" >> "$results"
  cat "$tmp_dir/report.json"
done

# The table: the lines of this run only (the file may hold earlier ones).
{
  echo "| keys | load s | puts/s | snapshot MiB | build s | node 1 peak MiB: load / build / restart | restart to ready s | node 2 peak MiB: receive / install / replay (HWM) | catch-up s | idle RSS MiB: node 1 / node 2 |"
  echo "|---:|---:|---:|---:|---:|---|---:|---|---:|---|"
  tail -n "$(wc -w <<< "$sizes")" "$results" | awk "$AWK_REPORT_FUNCTIONS"'
    {
      printf "| %s | %s | %s | %.0f | %.1f | %s / %s / %s | %s | %s / %s / %s (%s) | %s | %s / %s |\n",
        field($0, "keys"), field($0, "load_secs"), field($0, "load_puts_per_sec"),
        field($0, "snapshot_bytes") / 1048576, field($0, "snapshot_build_ms") / 1000,
        field($0, "node1_load_hwm_mib"), field($0, "node1_build_rss_mib"), field($0, "node1_restart_hwm_mib"),
        field($0, "restart_ready_secs"),
        field($0, "node2_receive_rss_mib"), field($0, "node2_install_rss_mib"), field($0, "node2_replay_rss_mib"),
        field($0, "node2_learner_hwm_mib"), field($0, "catchup_secs"),
        field($0, "node1_idle_rss_mib"), field($0, "node2_idle_rss_mib")
    }'
} | tee "$results_base.md"
log "results: $results (table: $results_base.md, samples: $results_base-<keys>.samples.tsv)"
