#!/usr/bin/env bash
# The long chaos matrix: every workload x fault mix x seed against a 5-node cluster,
# 300 s of workload per run (Jepsen's test-all). Every loop is bounded: the run count is
# workloads x mixes x --seeds, and each run is cut off by `timeout` if it overruns.
#
#   jepsen/matrix.sh [--seeds N] [--seed-base S] [--nodes N] [--time-limit-secs S]
#                    [--nemesis-interval-secs S] [--rate R] [--release] [--only-workload W]
#
# Workloads: register, object, set, queue (lease mode) and queue-pop (queue --queue-mode pop).
# Defaults: 3 seeds, 5 nodes, 300 s, faults every 5 s, 50 ops/s, debug build: 72 runs,
# about 7 hours. Needs root. Prints one line per run and writes a TSV summary to
# jepsen/store/matrix-<time>.tsv; exit 1 if any run was invalid, else 2 if any was
# unknown, else 0.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seeds=3
seed_base=1000
nodes=5
time_limit_secs=300
interval_secs=5
rate=50
profile=debug
workloads=(register object set queue queue-pop)
mixes=(none kill pause partition clock kill,pause,partition,clock)

while (( $# > 0 )); do
  case "$1" in
    --seeds) seeds="$2"; shift 2 ;;
    --seed-base) seed_base="$2"; shift 2 ;;
    --nodes) nodes="$2"; shift 2 ;;
    --time-limit-secs) time_limit_secs="$2"; shift 2 ;;
    --nemesis-interval-secs) interval_secs="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --release) profile=release; shift ;;
    --only-workload) workloads=("$2"); shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

if [[ "$profile" == release ]]; then
  cargo build --release -p cairn -p cairn-jepsen
else
  cargo build -p cairn -p cairn-jepsen
fi
harness="target/$profile/cairn-jepsen"
cairn="target/$profile/cairn"

# A run may overrun its time limit by setup, recovery, final reads and the check.
run_timeout_secs=$(( time_limit_secs + 300 ))
mkdir -p jepsen/store
summary="jepsen/store/matrix-$(date -u +%Y%m%dT%H%M%SZ).tsv"
log_dir="${summary%.tsv}-logs"
mkdir -p "$log_dir"
printf 'workload\tnemesis\tseed\texit\tverdict\tops\trun_dir\n' > "$summary"

invalid=0
unknown=0
for workload in "${workloads[@]}"; do
  for mix in "${mixes[@]}"; do
    for (( i = 0; i < seeds; i++ )); do
      seed=$(( seed_base + i ))
      nemesis_args=()
      if [[ "$mix" != none ]]; then
        nemesis_args=(--nemesis "$mix")
      fi
      workload_args=(--workload "$workload")
      if [[ "$workload" == queue-pop ]]; then
        workload_args=(--workload queue --queue-mode pop)
      fi
      log="$log_dir/$workload-${mix//,/+}-$seed.log"
      set +e
      timeout --signal=INT --kill-after=30 "$run_timeout_secs" \
        "$harness" run "${workload_args[@]}" "${nemesis_args[@]}" --nodes "$nodes" \
        --time-limit-secs "$time_limit_secs" --nemesis-interval-secs "$interval_secs" \
        --rate "$rate" --seed "$seed" --cairn-bin "$cairn" > "$log" 2>&1
      code=$?
      set -e
      verdict="$(tail -n 1 "$log")"
      ops="$(grep -E '^  [a-z]+: ' "$log" | tr -s ' ' | paste -sd ';' - || true)"
      run_dir="$(sed -n 's/^run directory: //p' "$log" | head -n 1)"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$workload" "$mix" "$seed" "$code" "$verdict" \
        "$ops" "$run_dir" | tee -a "$summary"
      case "$code" in
        0) ;;
        1) invalid=$(( invalid + 1 )) ;;
        *) unknown=$(( unknown + 1 )) ;;
      esac
    done
  done
done

echo "summary: $summary ($invalid invalid, $unknown unknown)"
if (( invalid > 0 )); then exit 1; fi
if (( unknown > 0 )); then exit 2; fi
exit 0
