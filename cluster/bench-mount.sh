#!/usr/bin/env bash
# Benchmarks a `cairn mount` of a 3-node cluster against the local disk (ext4 or
# whatever holds TMPDIR) and against a plain FUSE passthrough of that disk
# (Debian `bindfs`), in one run on this machine, and prints a markdown table with
# the ratios. docs/benchmarks.md ("The mount") explains the method and holds the
# results.
#
#   cluster/bench-mount.sh
#
# Workloads, each on every target:
#   seq write   BIG_MIB MiB of random bytes with dd bs=1M conv=fsync
#   read cold   the same file after the kernel's caches are dropped (and, for
#               cairn, after a remount, so the mount's block cache is empty too)
#   read warm   the same file again
#   creates     CREATES files of 4 KiB by 8 parallel writers (python)
#   tar x       extracting a real source tree (this repository's Cargo
#               dependencies' sources for tokio, or TAR_SRC)
#   ls -lR      of the extracted tree
# CPU: user + system seconds of the cairn nodes and the mount process (or of
# bindfs), from /proc, per operation.
#
# Environment: BIG_MIB (default 1024), CREATES (default 10000), TAR_SRC (a
# directory to tar; default the tokio sources in ~/.cargo/registry), RESULTS
# (default target/bench/mount-<UTC time>.md), TMPDIR. Needs root (drop_caches,
# mounting). Only loopback addresses. Every wait is bounded.
set -euo pipefail

readonly NODES=3
readonly CAIRN_GRPC_PORT_BASE=7670
readonly CAIRN_HTTP_PORT_BASE=7770
readonly UP_WAIT_SECS=30
readonly STOP_WAIT_SECS=15
readonly STEP_TIMEOUT_SECS=1800
readonly MOUNT_WAIT_SECS=30

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
big_mib="${BIG_MIB:-1024}"
creates="${CREATES:-10000}"

SCRIPT_NAME=bench-mount.sh
# shellcheck source=cluster/bench-lib.sh
source "$root/cluster/bench-lib.sh"

[[ "$(id -u)" -eq 0 ]] || die "run as root (drop_caches and mounts)"
command -v bindfs >/dev/null || install_debian_packages bindfs
[[ -x /usr/bin/time ]] || install_debian_packages time
command -v python3 >/dev/null || install_debian_packages python3

tar_src="${TAR_SRC:-$(ls -d "$HOME"/.cargo/registry/src/*/tokio-1.* 2>/dev/null | head -1)}"
[[ -d "$tar_src" ]] || die "no source tree to tar; set TAR_SRC"

log "building cairn (cargo build --release)"
(cd "$root" && cargo build --quiet --release --bin cairn) >&2
bin="${CARGO_TARGET_DIR:-$root/target}/release/cairn"

results="${RESULTS:-$root/target/bench/mount-$(date -u +%Y%m%dT%H%M%SZ).md}"
mkdir -p "$(dirname "$results")"
tmp_dir="$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench-mount.XXXXXX")"

log "data: ${big_mib} MiB random file, tar of $tar_src"
head -c "$(( big_mib * 1024 * 1024 ))" /dev/urandom > "$tmp_dir/big.src"
tar cf "$tmp_dir/tree.tar" -C "$(dirname "$tar_src")" "$(basename "$tar_src")"
tar_files="$(tar tf "$tmp_dir/tree.tar" | wc -l)"
sync


is_mounted() { awk -v m="$1" '$2 == m { found = 1 } END { exit !found }' /proc/self/mounts; }

wait_mounted() {
  local deadline=$(( SECONDS + MOUNT_WAIT_SECS ))
  until is_mounted "$1"; do
    (( SECONDS < deadline )) || die "$1 not mounted within ${MOUNT_WAIT_SECS}s"
    sleep 0.1
  done
}

# stop_pid PID: SIGTERM, wait (bounded), then SIGKILL.
stop_pid() {
  local pid="$1" deadline=$(( SECONDS + STOP_WAIT_SECS ))
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null; do
    if (( SECONDS >= deadline )); then kill -KILL "$pid" 2>/dev/null || true; break; fi
    sleep 0.1
  done
  wait "$pid" 2>/dev/null || true
}

declare -A seconds=() cpu=()
target_pids=()
# measure TARGET WORKLOAD -- command...: wall seconds and CPU of the target's processes.
measure() {
  local target="$1" workload="$2"; shift 3
  local before after
  before="$(cpu_secs "${target_pids[@]}")"
  if ! /usr/bin/time -o "$tmp_dir/time.out" -f '%e' \
      timeout "$STEP_TIMEOUT_SECS" "$@" > /dev/null 2> "$tmp_dir/step.err"; then
    tail -n 20 "$tmp_dir/step.err" >&2
    die "$workload on $target failed"
  fi
  after="$(cpu_secs "${target_pids[@]}")"
  seconds["$target/$workload"]="$(cat "$tmp_dir/time.out")"
  cpu["$target/$workload"]="$(awk -v a="$before" -v b="$after" 'BEGIN { printf "%.2f", b - a }')"
  log "$target $workload: ${seconds[$target/$workload]} s, ${cpu[$target/$workload]} CPU s"
}

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

creates_py='
import os, sys
from multiprocessing import Pool
root, total = sys.argv[1], int(sys.argv[2])
data = os.urandom(4096)
def writer(w):
    d = f"{root}/w{w}"
    os.makedirs(d, exist_ok=True)
    for i in range(w, total, 8):
        with open(f"{d}/f{i}", "wb") as f:
            f.write(data)
with Pool(8) as p:
    p.map(writer, range(8))
'

# workloads TARGET DIR [REMOUNT]: every workload on DIR; REMOUNT is a function that
# makes the target's own caches cold before the cold read.
workloads() {
  local target="$1" dir="$2" remount="${3:-}"
  measure "$target" "seq write" -- dd if="$tmp_dir/big.src" of="$dir/big" bs=1M conv=fsync
  [[ -n "$remount" ]] && "$remount"
  drop_caches
  measure "$target" "read cold" -- dd if="$dir/big" of=/dev/null bs=1M
  measure "$target" "read warm" -- dd if="$dir/big" of=/dev/null bs=1M
  measure "$target" "creates" -- python3 -c "$creates_py" "$dir/creates" "$creates"
  mkdir -p "$dir/tree"
  measure "$target" "tar x" -- tar xf "$tmp_dir/tree.tar" -C "$dir/tree"
  measure "$target" "ls -lR" -- ls -lR "$dir/tree"
}

# --- local disk ------------------------------------------------------------------------
mkdir -p "$tmp_dir/local"
target_pids=()
workloads local "$tmp_dir/local"

# --- bindfs: FUSE passthrough of the local disk ------------------------------------------
mkdir -p "$tmp_dir/bind-src" "$tmp_dir/bind"
bindfs -f "$tmp_dir/bind-src" "$tmp_dir/bind" 2> "$tmp_dir/bindfs.log" &
bindfs_pid=$!
pids+=("$bindfs_pid")
wait_mounted "$tmp_dir/bind"
target_pids=("$bindfs_pid")
workloads bindfs "$tmp_dir/bind"
stop_pid "$bindfs_pid"
pids=()

# --- cairn mount of a 3-node cluster -------------------------------------------------------
start_cairn_cluster
node_pids=("${pids[@]}")
deadline=$(( SECONDS + UP_WAIT_SECS ))
until cairn_ready; do
  all_alive || die "a cairn node exited during start-up"
  (( SECONDS < deadline )) || die "no leader within ${UP_WAIT_SECS}s"
  sleep 0.3
done
mkdir -p "$tmp_dir/cairn"
mount_pid=""
start_mount() {
  NO_COLOR=1 "$bin" --endpoints "$cairn_endpoints" mount "$tmp_dir/cairn" \
    >> "$tmp_dir/mount.log" 2>&1 < /dev/null &
  mount_pid=$!
  pids+=("$mount_pid")
  wait_mounted "$tmp_dir/cairn"
  target_pids=("${node_pids[@]}" "$mount_pid")
}
remount_cairn() {
  stop_pid "$mount_pid"
  start_mount
}
start_mount
workloads cairn "$tmp_dir/cairn" remount_cairn
cmp "$tmp_dir/big.src" "$tmp_dir/cairn/big" || die "the file read back through the mount differs"
stop_pid "$mount_pid"

# --- table -----------------------------------------------------------------------------
big_bytes=$(( big_mib * 1024 * 1024 ))
{
  echo "| workload | local disk | bindfs | cairn mount | cairn / local | cairn / bindfs | cairn CPU per op |"
  echo "|---|---|---|---|---|---|---|"
  for w in "seq write" "read cold" "read warm" "creates" "tar x" "ls -lR"; do
    case "$w" in
      "seq write"|"read cold"|"read warm") unit="MB/s"; amount="$(( big_bytes ))"; per=1e6; ops="$big_mib"; op_unit="ms/MiB" ;;
      creates) unit="files/s"; amount="$creates"; per=1; ops="$creates"; op_unit="ms/file" ;;
      *) unit="files/s"; amount="$tar_files"; per=1; ops="$tar_files"; op_unit="ms/file" ;;
    esac
    awk -v w="$w" -v u="$unit" -v a="$amount" -v p="$per" -v o="$ops" -v ou="$op_unit" \
        -v l="${seconds[local/$w]}" -v b="${seconds[bindfs/$w]}" -v c="${seconds[cairn/$w]}" \
        -v cc="${cpu[cairn/$w]}" 'BEGIN {
      if (l <= 0) l = 0.01; if (b <= 0) b = 0.01; if (c <= 0) c = 0.01
      printf "| %s | %.0f %s | %.0f %s | %.0f %s | %.2f | %.2f | %.2f %s |\n",
        w, a / p / l, u, a / p / b, u, a / p / c, u, l / c, b / c, 1000 * cc / o, ou }'
  done
  echo
  echo "big file ${big_mib} MiB; creates ${creates} x 4 KiB by 8 writers; tar x and ls -lR of ${tar_files} entries ($(basename "$tar_src"))"
} | tee -a "$results"
log "results appended to $results"
