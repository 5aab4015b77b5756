# Shared by the cluster/bench*.sh scripts (sourced, not run): logging, cleanup of
# exactly the processes and temp dir a script started, installing missing Debian
# packages, CPU seconds from /proc, and the awk helpers the result tables use. The
# sourcing script sets SCRIPT_NAME and STOP_WAIT_SECS first, and fills `pids` and
# `tmp_dir` as it starts things.
# shellcheck shell=bash

log() { echo "${SCRIPT_NAME}: $*" >&2; }
die() { log "$*"; exit 1; }

# --- awk helpers for the tables ------------------------------------------------------
# The reports are flat JSON objects with fixed field names, so awk alone reads them:
# field(line, name) is a field's value (quotes stripped), ratio(a, b) is a / b to two
# decimals or "n/a". Use as: awk "$AWK_REPORT_FUNCTIONS"' { ... }'.
# shellcheck disable=SC2034 # used by the sourcing scripts
readonly AWK_REPORT_FUNCTIONS='
  function field(line, name,   re, v) {
    re = "\"" name "\":\"?[^,\"}]*"
    if (!match(line, re)) return ""
    v = substr(line, RSTART + length(name) + 3, RLENGTH - length(name) - 3)
    sub(/^"/, "", v)
    return v
  }
  function ratio(a, b) { return (b > 0) ? sprintf("%.2f", a / b) : "n/a" }
'

# --- CPU seconds (user + system) a set of pids used so far, from /proc ---------------
cpu_secs() {
  local total=0 pid ticks
  ticks="$(getconf CLK_TCK)"
  for pid in "$@"; do
    [[ -r "/proc/$pid/stat" ]] || continue
    total=$(( total + $(awk '{print $14 + $15}' "/proc/$pid/stat") ))
  done
  awk -v t="$total" -v k="$ticks" 'BEGIN { printf "%.2f", t / k }'
}

# --- cleanup: only what this script started ------------------------------------------
pids=()
tmp_dir=""

dump_logs() {
  local f
  [[ -n "$tmp_dir" && -d "$tmp_dir" ]] || return 0
  for f in "$tmp_dir"/*/node.log; do
    [[ -f "$f" ]] || continue
    log "last lines of $f:"
    tail -n 15 "$f" >&2 || true
  done
}

cleanup() {
  local status=$? pid deadline alive
  trap - EXIT INT TERM
  if (( status != 0 )); then
    dump_logs
  fi
  if (( ${#pids[@]} > 0 )); then
    for pid in "${pids[@]}"; do
      kill -TERM "$pid" 2>/dev/null || true
    done
    deadline=$(( SECONDS + STOP_WAIT_SECS ))
    while :; do
      alive=0
      for pid in "${pids[@]}"; do
        kill -0 "$pid" 2>/dev/null && alive=$(( alive + 1 ))
      done
      (( alive == 0 )) && break
      if (( SECONDS >= deadline )); then
        for pid in "${pids[@]}"; do
          if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid still running after ${STOP_WAIT_SECS}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
          fi
        done
        break
      fi
      sleep 0.2
    done
    # Reap them (they are our children), so none outlives the script.
    for pid in "${pids[@]}"; do
      wait "$pid" 2>/dev/null || true
    done
  fi
  if [[ -n "$tmp_dir" && -d "$tmp_dir" ]]; then
    # --one-file-system: a mount left inside (bench-mount.sh) is never descended into.
    rm -rf --one-file-system -- "$tmp_dir"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- prerequisites -------------------------------------------------------------------
install_debian_packages() {
  if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null; then
    die "missing: $*; install the Debian packages ($*) and run again"
  fi
  log "installing Debian packages: $*"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}


# --- the binary measured -------------------------------------------------------------
# cairn_binary [cargo features]: sets built_bin to $CAIRN_BIN if set, else builds
# target/release/cairn (with the features, if any) and uses that. The caller sets root.
# shellcheck disable=SC2154 # root is set by the sourcing script
cairn_binary() {
  local features="${1:-}"
  if [[ -n "${CAIRN_BIN:-}" ]]; then
    built_bin="$CAIRN_BIN"
  else
    log "building cairn (cargo build --release${features:+ --features $features})"
    (cd "$root" && cargo build --quiet --release ${features:+--features "$features"} --bin cairn) >&2
    built_bin="${CARGO_TARGET_DIR:-$root/target}/release/cairn"
  fi
  [[ -x "$built_bin" ]] || die "no cairn binary at $built_bin"
}

# --- the cairn cluster (the caller sets bin, tmp_dir, NODES, CAIRN_GRPC_PORT_BASE and
# CAIRN_HTTP_PORT_BASE; this sets cairn_endpoints and cairn_pids) ----------------------
# start_cairn_cluster [binary [grpc port base [http port base [name [server flags]]]]]
# starts NODES nodes of `binary` (default $bin) with data in $tmp_dir/<name><i>
# (default name "cairn"); a second cluster (a baseline binary, or other flags)
# passes its own ports and name; `server flags` is a space-separated list.
# shellcheck disable=SC2154 # set by the sourcing script
start_cairn_cluster() {
  local node_bin="${1:-$bin}" grpc_base="${2:-$CAIRN_GRPC_PORT_BASE}"
  local http_base="${3:-$CAIRN_HTTP_PORT_BASE}" name="${4:-cairn}" i dir peers=""
  local -a flags=()
  read -r -a flags <<< "${5:-}"
  cairn_endpoints=""
  cairn_pids=()
  for (( i = 1; i <= NODES; i++ )); do
    # Peer ports sit 50 above the gRPC ones (the default, gRPC + 1, is the next node's gRPC port).
    peers+="${peers:+,}$i=127.0.0.1:$(( grpc_base + 50 + i - 1 ))"
    cairn_endpoints+="${cairn_endpoints:+,}127.0.0.1:$(( grpc_base + i - 1 ))"
  done
  "$node_bin" admin init-secret "$tmp_dir/$name.secret" >/dev/null
  for (( i = 1; i <= NODES; i++ )); do
    dir="$tmp_dir/$name$i"
    mkdir -p "$dir"
    NO_COLOR=1 "$node_bin" server --id "$i" --data-dir "$dir" \
      --grpc-addr "127.0.0.1:$(( grpc_base + i - 1 ))" \
      --http-addr "127.0.0.1:$(( http_base + i - 1 ))" \
      --peer-addr "127.0.0.1:$(( grpc_base + 50 + i - 1 ))" \
      --cluster-secret-file "$tmp_dir/$name.secret" \
      --peers "$peers" "${flags[@]}" > "$dir/node.log" 2>&1 < /dev/null &
    pids+=("$!")
    cairn_pids+=("$!")
  done
}

# --- server CPU per operation ------------------------------------------------------------
# with_server_cpu LINE CPU_SECS SYSTEM: the JSON report LINE with the system's name,
# the CPU seconds its server processes used during the cell and the microseconds
# of that per completed operation (OPS_FIELD names the count, default "ops").
with_server_cpu() {
  local line="$1" cpu="$2" system="$3" ops_field="${4:-ops}" ops us
  ops="$(awk -v f="$ops_field" "$AWK_REPORT_FUNCTIONS"' { print field($0, f) + 0 }' <<< "$line")"
  us="$(awk -v c="$cpu" -v n="$ops" 'BEGIN { if (n > 0) printf "%.1f", c * 1e6 / n; else print "null" }')"
  echo "${line%\}},\"system\":\"$system\",\"server_cpu_secs\":$cpu,\"server_cpu_us_per_op\":$us}"
}

# --- readiness --------------------------------------------------------------------------
all_alive() {
  local pid
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { log "pid $pid exited"; return 1; }
  done
}

# cairn_ready [endpoints]: whether the cluster at endpoints (default $cairn_endpoints)
# has a leader.
# shellcheck disable=SC2154 # bin is set by the sourcing script
cairn_ready() {
  local status
  status="$(timeout 5 "$bin" cluster status --json --endpoints "${1:-$cairn_endpoints}" 2>/dev/null || true)"
  [[ "$status" =~ \"leader\":[0-9]+ ]]
}
