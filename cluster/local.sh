#!/usr/bin/env bash
# Runs an N-node cairn cluster on 127.0.0.1, for trying things out and for tests.
#
#   cluster/local.sh up N        build, start nodes 1..N, wait for a leader
#   cluster/local.sh down        stop the nodes this script started
#   cluster/local.sh restart I   stop node I (SIGTERM) and start it again on its
#                                data (one step of cluster/rolling-restart.sh)
#   cluster/local.sh status [--json]   cairn cluster status against those nodes
#
# Node i gets id i, gRPC port CAIRN_BASE_GRPC_PORT+i-1, HTTP port
# CAIRN_BASE_HTTP_PORT+i-1, peer port CAIRN_BASE_PEER_PORT+i-1 (mutual TLS from the
# cluster secret CAIRN_CLUSTER_DIR/cluster.secret, made by the first `up`), and the
# directory CAIRN_CLUSTER_DIR/node<i>, which
# holds its data (sled/, snapshots/), its log (node.log) and its pid (node.pid).
# Data survives `down`; `up` with the same N restarts the same cluster. To start
# from scratch, run `down` and then remove CAIRN_CLUSTER_DIR.
#
# Environment:
#   CAIRN_BIN              cairn binary to run (default: `cargo build`, then
#                          target/debug/cairn)
#   CAIRN_BASE_GRPC_PORT   gRPC port of node 1 (default 7410)
#   CAIRN_BASE_HTTP_PORT   HTTP port of node 1 (default 7490)
#   CAIRN_BASE_PEER_PORT   peer port of node 1 (default 7430)
#   CAIRN_CLUSTER_DIR      where node directories go (default ./cluster/run)
#   RUST_LOG               passed on to the nodes (default: cairn's own)
#   NO_COLOR               passed on to the nodes (default 1: no colour codes in logs)
#
# The defaults stay clear of a dev node (`cairn server --dev` uses 7400/7480).
set -euo pipefail

readonly UP_WAIT_SECS=30
readonly DOWN_WAIT_SECS=10
# A bound of this script (ports and patience), not of cairn.
readonly NODES_MAX=9

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
grpc_base="${CAIRN_BASE_GRPC_PORT:-7410}"
http_base="${CAIRN_BASE_HTTP_PORT:-7490}"
peer_base="${CAIRN_BASE_PEER_PORT:-7430}"
cluster_dir="${CAIRN_CLUSTER_DIR:-./cluster/run}"
# Resolve against the caller's directory before anything changes it.
case "$cluster_dir" in
  /*) ;;
  *) cluster_dir="$PWD/${cluster_dir#./}" ;;
esac

usage() {
  echo "usage: $0 up N | down | restart I | status [--json]" >&2
  exit 2
}

log() { echo "local.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# Prints the cairn binary to use; builds it unless CAIRN_BIN names one.
cairn_bin() {
  if [[ -n "${CAIRN_BIN:-}" ]]; then
    [[ -x "$CAIRN_BIN" ]] || die "CAIRN_BIN=$CAIRN_BIN is not an executable file"
    case "$CAIRN_BIN" in
      /*) echo "$CAIRN_BIN" ;;
      *) echo "$PWD/$CAIRN_BIN" ;;
    esac
    return
  fi
  log "building cairn (cargo build)"
  (cd "$root" && cargo build --quiet --bin cairn) >&2
  local target_dir="${CARGO_TARGET_DIR:-target}"
  [[ "$target_dir" == /* ]] || target_dir="$root/$target_dir"
  echo "$target_dir/debug/cairn"
}

# The binary recorded by `up`, so `status` needs no build.
recorded_bin() {
  if [[ -n "${CAIRN_BIN:-}" ]]; then
    cairn_bin
  elif [[ -f "$cluster_dir/bin" ]]; then
    cat "$cluster_dir/bin"
  else
    cairn_bin
  fi
}

# Whether $1 is a live process started as a cairn node on data dir $2 (guards
# against a pid that was reused by something else since it was recorded).
is_our_node() {
  local pid="$1" data_dir="$2" args
  args="$(ps -p "$pid" -o args= 2>/dev/null)" || return 1
  [[ "$args" == *" server "* && "$args" == *"--data-dir $data_dir"* ]]
}

# Starts node $2 with binary $1 and peers map $3, in the background.
start_node() {
  local bin="$1" i="$2" peers="$3" dir="$cluster_dir/node$2"
  mkdir -p "$dir"
  NO_COLOR="${NO_COLOR:-1}" nohup "$bin" server \
    --id "$i" \
    --data-dir "$dir" \
    --grpc-addr "127.0.0.1:$(( grpc_base + i - 1 ))" \
    --http-addr "127.0.0.1:$(( http_base + i - 1 ))" \
    --peer-addr "127.0.0.1:$(( peer_base + i - 1 ))" \
    --cluster-secret-file "$cluster_dir/cluster.secret" \
    --peers "$peers" \
    >> "$dir/node.log" 2>&1 < /dev/null &
  echo $! > "$dir/node.pid"
  log "node $i: pid $!, gRPC 127.0.0.1:$(( grpc_base + i - 1 )), HTTP http://127.0.0.1:$(( http_base + i - 1 ))/, log $dir/node.log"
}

cmd_up() {
  local count="${1:-}"
  [[ "$count" =~ ^[1-9][0-9]*$ ]] || usage
  (( count <= NODES_MAX )) || die "at most $NODES_MAX nodes"
  mkdir -p "$cluster_dir"
  local dir
  for dir in "$cluster_dir"/node*; do
    if [[ -f "$dir/node.pid" ]] && is_our_node "$(cat "$dir/node.pid")" "$dir"; then
      die "a node is already running in $dir; run '$0 down' first"
    fi
  done

  local bin
  bin="$(cairn_bin)"
  [[ -x "$bin" ]] || die "no cairn binary at $bin"
  echo "$bin" > "$cluster_dir/bin"

  local i peers="" endpoints=""
  for (( i = 1; i <= count; i++ )); do
    peers+="${peers:+,}$i=127.0.0.1:$(( peer_base + i - 1 ))"
    endpoints+="${endpoints:+,}127.0.0.1:$(( grpc_base + i - 1 ))"
  done
  echo "$endpoints" > "$cluster_dir/endpoints"
  [[ -f "$cluster_dir/cluster.secret" ]] || "$bin" admin init-secret "$cluster_dir/cluster.secret" >/dev/null

  echo "$peers" > "$cluster_dir/peers"
  for (( i = 1; i <= count; i++ )); do
    start_node "$bin" "$i" "$peers"
  done

  local deadline=$(( SECONDS + UP_WAIT_SECS )) status=""
  while (( SECONDS < deadline )); do
    for (( i = 1; i <= count; i++ )); do
      dir="$cluster_dir/node$i"
      if ! is_our_node "$(cat "$dir/node.pid")" "$dir"; then
        log "node $i exited; last lines of $dir/node.log:"
        tail -n 20 "$dir/node.log" >&2
        cmd_down
        exit 1
      fi
    done
    status="$(timeout 5 "$bin" cluster status --json --endpoints "$endpoints" 2>/dev/null || true)"
    if [[ "$status" =~ \"leader\":[0-9]+ ]]; then
      log "cluster is up: ${BASH_REMATCH[0]}"
      echo "export CAIRN_ENDPOINTS=$endpoints"
      return 0
    fi
    sleep 0.5
  done
  log "no leader after ${UP_WAIT_SECS}s; stopping the nodes (logs stay in $cluster_dir/node*/node.log)"
  cmd_down
  exit 1
}

cmd_down() {
  local dir pid pids=() dirs=()
  for dir in "$cluster_dir"/node*; do
    [[ -f "$dir/node.pid" ]] || continue
    pid="$(cat "$dir/node.pid")"
    if is_our_node "$pid" "$dir"; then
      kill -TERM "$pid"
      pids+=("$pid")
      dirs+=("$dir")
    else
      rm -f "$dir/node.pid"
    fi
  done
  if (( ${#pids[@]} == 0 )); then
    log "no running nodes under $cluster_dir"
    return 0
  fi
  log "sent SIGTERM to ${pids[*]}"
  local deadline=$(( SECONDS + DOWN_WAIT_SECS )) alive k
  while :; do
    alive=0
    for k in "${!pids[@]}"; do
      is_our_node "${pids[$k]}" "${dirs[$k]}" && alive=$(( alive + 1 ))
    done
    (( alive == 0 )) && break
    if (( SECONDS >= deadline )); then
      for k in "${!pids[@]}"; do
        if is_our_node "${pids[$k]}" "${dirs[$k]}"; then
          log "pid ${pids[$k]} still running after ${DOWN_WAIT_SECS}s; sending SIGKILL"
          kill -KILL "${pids[$k]}" 2>/dev/null || true
        fi
      done
      break
    fi
    sleep 0.2
  done
  for dir in "${dirs[@]}"; do
    rm -f "$dir/node.pid"
  done
  log "stopped"
}

cmd_restart() {
  local i="$1" dir="$cluster_dir/node$1" pid
  [[ -f "$cluster_dir/peers" && -f "$cluster_dir/bin" ]] \
    || die "no cluster recorded under $cluster_dir; run '$0 up N' first"
  [[ -d "$dir" ]] || die "no node $i under $cluster_dir"
  if [[ -f "$dir/node.pid" ]] && pid="$(cat "$dir/node.pid")" && is_our_node "$pid" "$dir"; then
    kill -TERM "$pid"
    local deadline=$(( SECONDS + DOWN_WAIT_SECS )) killed=0
    while is_our_node "$pid" "$dir"; do
      if (( SECONDS >= deadline )); then
        (( killed )) && die "node $i (pid $pid) survived SIGKILL"
        log "node $i (pid $pid) still running after ${DOWN_WAIT_SECS}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        killed=1
        deadline=$(( SECONDS + DOWN_WAIT_SECS ))
      fi
      sleep 0.2
    done
    log "node $i stopped"
  fi
  start_node "$(cat "$cluster_dir/bin")" "$i" "$(cat "$cluster_dir/peers")"
}

cmd_status() {
  [[ -f "$cluster_dir/endpoints" ]] || die "no cluster recorded under $cluster_dir; run '$0 up N' first"
  local bin
  bin="$(recorded_bin)"
  "$bin" cluster status --endpoints "$(cat "$cluster_dir/endpoints")" "$@"
}

case "${1:-}" in
  up) shift; [[ $# -eq 1 ]] || usage; cmd_up "$1" ;;
  down) shift; [[ $# -eq 0 ]] || usage; cmd_down ;;
  restart) shift; [[ $# -eq 1 && "$1" =~ ^[1-9][0-9]*$ ]] || usage; cmd_restart "$1" ;;
  status) shift; cmd_status "$@" ;;
  *) usage ;;
esac
