#!/usr/bin/env bash
# Benchmarks `cairn storage upload` / `download` into a 3-node cluster against the
# physical reference (`cp -r` into a local directory, then `sync`) and against
# `rsync -a` to a local rsync daemon on loopback, in one run on this machine, and
# prints a markdown table of MB/s, files/s and the ratios. docs/benchmarks.md
# ("File system") explains the method and holds the results.
#
#   cluster/bench-fs.sh
#
# What it does:
#   1. builds target/release/cairn;
#   2. writes the data set under the temp directory: one file of BIG_MIB MiB of
#      random bytes, and SMALL_FILES files of 4 KiB of random bytes in 100
#      directories;
#   3. reference runs: `cp -r` of each set into a fresh directory on the same
#      file system followed by `sync`; `rsync -a` of each set to an rsync daemon
#      (module on a fresh directory) listening on 127.0.0.1:RSYNC_PORT;
#   4. starts a 3-node cairn cluster (gRPC 127.0.0.1:7660-7662, HTTP 7760-7762)
#      with data under the temp directory, waits (bounded) for a leader, then runs
#      `cairn storage upload` and `download` of each set, timing each and reading
#      the CPU seconds the three nodes and the client used from /proc;
#   5. prints the table (also appended to RESULTS);
#   6. on exit, however it exits, stops the processes it started (by pid) and
#      removes its temp directory.
#
# Environment:
#   BIG_MIB       size of the big file (default 1024)
#   SMALL_FILES   number of 4 KiB files (default 10000)
#   RESULTS       results file (default target/bench/fs-<UTC time>.md)
#   TMPDIR        where the temp directory goes (default /tmp)
#
# rsync must be installed (Debian package rsync; installed when run as root).
# Only loopback addresses are used. Every wait is bounded.
set -euo pipefail

readonly NODES=3
readonly CAIRN_GRPC_PORT_BASE=7660
readonly CAIRN_HTTP_PORT_BASE=7760
readonly RSYNC_PORT=7873
readonly UP_WAIT_SECS=30
readonly STOP_WAIT_SECS=10
readonly STEP_TIMEOUT_SECS=1800

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
big_mib="${BIG_MIB:-1024}"
small_files="${SMALL_FILES:-10000}"

SCRIPT_NAME=bench-fs.sh
# shellcheck source=cluster/bench-lib.sh
source "$root/cluster/bench-lib.sh"

command -v rsync >/dev/null || install_debian_packages rsync

log "building cairn (cargo build --release)"
(cd "$root" && cargo build --quiet --release --bin cairn) >&2
bin="${CARGO_TARGET_DIR:-$root/target}/release/cairn"
[[ -x "$bin" ]] || die "no cairn binary at $bin"

results="${RESULTS:-$root/target/bench/fs-$(date -u +%Y%m%dT%H%M%SZ).md}"
mkdir -p "$(dirname "$results")"
tmp_dir="$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench-fs.XXXXXX")"

log "writing the data set: ${big_mib} MiB file, ${small_files} x 4 KiB files"
mkdir -p "$tmp_dir/src/big" "$tmp_dir/src/small"
head -c "$(( big_mib * 1024 * 1024 ))" /dev/urandom > "$tmp_dir/src/big/file.bin"
for (( d = 0; d < 100; d++ )); do mkdir -p "$tmp_dir/src/small/d$d"; done
head -c "$(( small_files * 4096 ))" /dev/urandom \
  | split -b 4096 -a 6 -d - "$tmp_dir/src/small/f"
i=0
for f in "$tmp_dir"/src/small/f*; do
  mv "$f" "$tmp_dir/src/small/d$(( i % 100 ))/"
  i=$(( i + 1 ))
done
sync


rows=()
# run NAME SET FILES BYTES -- command...: times the command, records a row with the
# wall time, MB/s, files/s, and the CPU seconds of the cairn nodes and the client.
run() {
  local name="$1" set="$2" files="$3" bytes="$4"; shift 5
  local cpu_before cpu_after server_cpu
  cpu_before="$(cpu_secs "${pids[@]}")"
  if ! /usr/bin/time -o "$tmp_dir/time.out" -f '%e %U %S' \
      timeout "$STEP_TIMEOUT_SECS" "$@" > /dev/null 2> "$tmp_dir/step.err"; then
    tail -n 20 "$tmp_dir/step.err" >&2
    die "$name ($set) failed"
  fi
  cpu_after="$(cpu_secs "${pids[@]}")"
  server_cpu="$(awk -v a="$cpu_before" -v b="$cpu_after" 'BEGIN { printf "%.2f", b - a }')"
  local row
  row="$(awk -v n="$name" -v s="$set" -v f="$files" -v b="$bytes" -v sc="$server_cpu" '{
    t = $1; if (t <= 0) t = 0.01
    printf "| %s | %s | %.2f | %.1f | %.0f | %s | %.2f |", n, s, t, b / 1e6 / t, f / t, sc, $2 + $3 }' \
    "$tmp_dir/time.out")"
  rows+=("$row")
  log "$row"
}

[[ -x /usr/bin/time ]] || install_debian_packages time

big_bytes=$(( big_mib * 1024 * 1024 ))
small_bytes=$(( small_files * 4096 ))

# --- references --------------------------------------------------------------------
mkdir -p "$tmp_dir/cp-big" "$tmp_dir/cp-small"
run "cp -r + sync" big 1 "$big_bytes" -- sh -c "cp -r '$tmp_dir/src/big/.' '$tmp_dir/cp-big/' && sync"
run "cp -r + sync" small "$small_files" "$small_bytes" -- sh -c "cp -r '$tmp_dir/src/small/.' '$tmp_dir/cp-small/' && sync"

mkdir -p "$tmp_dir/rsyncd/vol"
cat > "$tmp_dir/rsyncd/rsyncd.conf" <<CONF
pid file = $tmp_dir/rsyncd/rsyncd.pid
use chroot = false
# As root the daemon would drop to nobody, who cannot write the module directory.
uid = $(id -u)
gid = $(id -g)
[vol]
    path = $tmp_dir/rsyncd/vol
    read only = false
CONF
rsync --daemon --no-detach --address=127.0.0.1 --port="$RSYNC_PORT" \
  --config="$tmp_dir/rsyncd/rsyncd.conf" --log-file="$tmp_dir/rsyncd/log" &
rsync_pid=$!
pids+=("$rsync_pid")
for (( t = 0; t < 50; t++ )); do
  (exec 3<>"/dev/tcp/127.0.0.1/$RSYNC_PORT") 2>/dev/null && break
  sleep 0.1
done
run "rsync -a (daemon)" big 1 "$big_bytes" -- rsync -a "$tmp_dir/src/big/" "rsync://127.0.0.1:$RSYNC_PORT/vol/big/"
run "rsync -a (daemon)" small "$small_files" "$small_bytes" -- rsync -a "$tmp_dir/src/small/" "rsync://127.0.0.1:$RSYNC_PORT/vol/small/"
kill -TERM "$rsync_pid" 2>/dev/null || true
wait "$rsync_pid" 2>/dev/null || true
pids=()
# rsync does not sync: write its data back now, not under cairn's measurement.
sync

# --- cairn ---------------------------------------------------------------------------
start_cairn_cluster
deadline=$(( SECONDS + UP_WAIT_SECS ))
until cairn_ready; do
  all_alive || die "a cairn node exited during start-up"
  (( SECONDS < deadline )) || die "no leader within ${UP_WAIT_SECS}s"
  sleep 0.3
done
run "cairn storage upload" big 1 "$big_bytes" -- "$bin" --endpoints "$cairn_endpoints" storage upload "$tmp_dir/src/big" /big -r
run "cairn storage upload" small "$small_files" "$small_bytes" -- "$bin" --endpoints "$cairn_endpoints" storage upload "$tmp_dir/src/small" /small -r
run "cairn storage download" big 1 "$big_bytes" -- "$bin" --endpoints "$cairn_endpoints" storage download /big "$tmp_dir/dl-big" -r
run "cairn storage download" small "$small_files" "$small_bytes" -- "$bin" --endpoints "$cairn_endpoints" storage download /small "$tmp_dir/dl-small" -r
diff -r "$tmp_dir/src/big" "$tmp_dir/dl-big" >/dev/null || die "downloaded big set differs"
diff -r "$tmp_dir/src/small" "$tmp_dir/dl-small" >/dev/null || die "downloaded small set differs"

{
  echo "| tool | set | seconds | MB/s | files/s | server CPU s | client CPU s |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} | tee -a "$results"
log "results appended to $results"
