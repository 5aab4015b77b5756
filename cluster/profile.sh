#!/usr/bin/env bash
# Profiles the leader of a 3-node cairn cluster with `perf record` while the load
# generator runs one workload, and prints the top entries of `perf report`
# (self time, by symbol). docs/benchmarks.md ("Where the CPU goes") holds results.
#
#   cluster/profile.sh put        # 64 clients of 256-byte KV puts, 10 s
#   cluster/profile.sh object     # 1 client uploading 4 objects of 256 MiB
#
# What it does:
#   1. uses CAIRN_BIN, or builds target/release/cairn (default features);
#   2. starts a 3-node cluster (gRPC 127.0.0.1:7680-7682, HTTP 7780-7782) under a
#      temp directory and waits (bounded) for a leader;
#   3. starts the workload, waits 2 s for it to settle, records the leader for
#      PROFILE_SECS (default 10) at 499 Hz with call graphs (`perf record -g`), and
#      also samples the CPU seconds of all three nodes over the same window;
#   4. prints `perf report --no-children` entries above 1 % and the CPU split; the
#      perf.data file stays under target/bench/ (profile-<workload>-<time>.data);
#   5. on exit stops the processes it started, by pid, and removes its temp dir.
#
# Needs perf (Debian `linux-perf`; installed with apt-get when run as root) and
# permission to profile (root, or kernel.perf_event_paranoid <= 1). Loopback only;
# every wait is bounded.
set -euo pipefail

readonly NODES=3
readonly CAIRN_GRPC_PORT_BASE=7680
readonly CAIRN_HTTP_PORT_BASE=7780
readonly UP_WAIT_SECS=30
readonly STOP_WAIT_SECS=10
readonly SETTLE_SECS=2
readonly LOAD_TIMEOUT_SECS=300

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT_NAME=profile.sh
# shellcheck source=cluster/bench-lib.sh
source "$root/cluster/bench-lib.sh"

workload="${1:-}"
[[ "$workload" == put || "$workload" == object ]] || die "usage: cluster/profile.sh put|object"
profile_secs="${PROFILE_SECS:-10}"
[[ "$profile_secs" =~ ^[0-9]+$ ]] || die "PROFILE_SECS must be whole seconds"

command -v perf >/dev/null || install_debian_packages linux-perf
command -v perf >/dev/null || die "no perf; apt-get install -y linux-perf"

cairn_binary

out_dir="$root/target/bench"
mkdir -p "$out_dir"
data="$out_dir/profile-$workload-$(date -u +%Y%m%dT%H%M%SZ).data"
tmp_dir="$(mktemp -d "${TMPDIR:-/tmp}/cairn-profile.XXXXXX")"
bin="$tmp_dir/cairn"
cp "$built_bin" "$bin"

start_cairn_cluster
deadline=$(( SECONDS + UP_WAIT_SECS ))
until cairn_ready; do
  all_alive || die "a node exited while starting"
  (( SECONDS < deadline )) || die "no leader after ${UP_WAIT_SECS}s"
  sleep 0.5
done
leader_id="$(timeout 5 "$bin" cluster status --json --endpoints "$cairn_endpoints" \
  | sed -n 's/.*"leader":\([0-9]*\).*/\1/p' | head -n 1)"
[[ "$leader_id" =~ ^[0-9]+$ ]] || die "could not tell the leader"
leader_pid="${cairn_pids[$(( leader_id - 1 ))]}"
log "leader is node $leader_id (pid $leader_pid)"

load_secs=$(( SETTLE_SECS + profile_secs + 3 ))
case "$workload" in
  put)
    load=(bench kv --target cairn --endpoints "$cairn_endpoints" --clients 64
      --duration "$load_secs" --value-size 256 --op put --keys 1000 --json) ;;
  object)
    load=(bench object --endpoints "$cairn_endpoints" --size 256MiB --count 4 --clients 1
      --phase-secs-max "$load_secs" --json) ;;
esac
timeout "$LOAD_TIMEOUT_SECS" "$bin" "${load[@]}" > "$tmp_dir/load.json" &
load_pid=$!
pids+=("$load_pid")
sleep "$SETTLE_SECS"
declare -a before
for pid in "${cairn_pids[@]}"; do before+=("$(cpu_secs "$pid")"); done
perf record -F 499 -g -p "$leader_pid" -o "$data" -- sleep "$profile_secs" 2> "$tmp_dir/perf.log" \
  || die "perf record failed: $(tail -n 3 "$tmp_dir/perf.log")"
split=""
for (( i = 0; i < NODES; i++ )); do
  used="$(awk -v a="${before[$i]}" -v b="$(cpu_secs "${cairn_pids[$i]}")" 'BEGIN { printf "%.2f", b - a }')"
  role=""
  if (( i + 1 == leader_id )); then role=" (leader)"; fi
  split+="node $(( i + 1 ))$role: ${used} s; "
done
wait "$load_pid" || log "the load generator exited with an error (see $tmp_dir/load.json)"

echo "workload $workload, ${profile_secs} s on the leader, cairn $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "CPU over the window: $split"
echo "load: $(cat "$tmp_dir/load.json")"
echo
perf report -i "$data" --no-children --sort symbol --percent-limit 1 --stdio 2>/dev/null \
  | grep -E '^ +[0-9.]+%' | head -n 40
log "perf data: $data (perf report -i $data)"
