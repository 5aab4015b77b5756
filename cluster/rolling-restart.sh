#!/usr/bin/env bash
# Restarts every member of a running cairn cluster, one at a time, without
# losing availability: followers first; the leader last, after handing its role
# to a follower (`cairn cluster transfer-leader`). After each restart it waits
# until the node is ready (`cairn cluster wait-ready`: answering, knows the
# leader, has applied what the leader had logged) before the next one.
#
#   cluster/rolling-restart.sh --compose [-p PROJECT] [-f FILE]... [--recreate]
#   cluster/rolling-restart.sh --restart-cmd 'COMMAND WITH {id}'
#
#   --compose          the nodes are services of a compose project
#                      (cluster/compose.yaml); a node's service is the host part
#                      of its peer address (cairn2:7401 -> cairn2)
#   -p, --project P    compose project name (docker-compose -p)
#   -f, --file F       compose file, repeatable (default cluster/compose.yaml)
#   --recreate         recreate each container instead of restarting it (an
#                      upgrade: set CAIRN_IMAGE to the new image first)
#   --restart-cmd CMD  for nodes run as processes: a command that restarts node
#                      {id} and returns (e.g. 'systemctl restart cairn@{id}' or
#                      'cluster/local.sh restart {id}'), run with bash -c
#   --timeout-s N      how long one node may take to be ready (default 120)
#
# Environment: CAIRN_ENDPOINTS (gRPC addresses of the nodes, as for every cairn
# command; required), CAIRN_TOKEN if the cluster has tokens, CAIRN_BIN (the
# cairn binary; default: cairn on PATH, else target/release or target/debug).
# Exits non-zero, leaving the remaining nodes alone, when a node is not ready in
# time.
set -euo pipefail

# Bounds of this script, not of cairn.
readonly TRANSFER_TRIES_MAX=3
readonly MEMBERS_MAX=15
readonly STOP_TIMEOUT_S=30

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mode=""
project=""
files=()
recreate=0
restart_cmd=""
timeout_s=120

log() { echo "rolling-restart.sh: $*" >&2; }
die() { log "$*"; exit 1; }
usage() {
  sed -n '/^#   cluster\/rolling-restart.sh --compose/,/^#   --timeout-s/p' "${BASH_SOURCE[0]}" \
    | sed 's/^# \{0,1\}//' >&2
  exit 2
}

while (( $# > 0 )); do
  case "$1" in
    --compose) mode=compose; shift ;;
    -p|--project) [[ $# -ge 2 ]] || usage; project="$2"; shift 2 ;;
    -f|--file) [[ $# -ge 2 ]] || usage; files+=("$2"); shift 2 ;;
    --recreate) recreate=1; shift ;;
    --restart-cmd) [[ $# -ge 2 ]] || usage; mode=process; restart_cmd="$2"; shift 2 ;;
    --timeout-s) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || usage; timeout_s="$2"; shift 2 ;;
    -h|--help) usage ;;
    *) log "unknown argument $1"; usage ;;
  esac
done
[[ -n "$mode" ]] || usage
[[ -n "${CAIRN_ENDPOINTS:-}" ]] || die "set CAIRN_ENDPOINTS to the gRPC addresses of the nodes"

cairn_bin() {
  if [[ -n "${CAIRN_BIN:-}" ]]; then
    echo "$CAIRN_BIN"
  elif command -v cairn >/dev/null; then
    command -v cairn
  elif [[ -x "$root/target/release/cairn" ]]; then
    echo "$root/target/release/cairn"
  elif [[ -x "$root/target/debug/cairn" ]]; then
    echo "$root/target/debug/cairn"
  else
    die "no cairn binary: set CAIRN_BIN or build one"
  fi
}
cairn="$(cairn_bin)"
[[ -x "$cairn" ]] || die "$cairn is not executable"

compose=()
if [[ "$mode" == compose ]]; then
  command -v docker-compose >/dev/null || die "docker-compose is not installed"
  (( ${#files[@]} > 0 )) || files=("$root/cluster/compose.yaml")
  compose=(docker-compose)
  [[ -n "$project" ]] && compose+=(-p "$project")
  for file in "${files[@]}"; do compose+=(-f "$file"); done
fi

# One line per member: "id peer_addr role", from `cairn cluster status --json`
# (flat member objects, so splitting at "},{" separates them).
members() {
  local json
  json="$("$cairn" cluster status --json)" || return 1
  sed -e 's/.*"members":\[//' -e 's/\].*//' -e 's/},{/}\n{/g' <<< "$json" \
    | while read -r member; do
        local id peer role
        id="$(grep -o '"id":[0-9]*' <<< "$member" | cut -d: -f2)"
        peer="$(grep -o '"peer_addr":"[^"]*"' <<< "$member" | cut -d'"' -f4)"
        role="$(grep -o '"role":"[^"]*"' <<< "$member" | cut -d'"' -f4)"
        [[ -n "$id" ]] && echo "$id $peer $role"
      done
}

leader() {
  "$cairn" cluster status --json | grep -o '"leader":[0-9]*' | cut -d: -f2
}

# The compose service of a node: the host part of its peer address.
service_of() {
  local peer="$1"
  echo "${peer%:*}"
}

restart_node() {
  local id="$1" peer="$2"
  if [[ "$mode" == process ]]; then
    local cmd="${restart_cmd//\{id\}/$id}"
    log "node $id: $cmd"
    bash -c "$cmd"
    return
  fi
  local service container code
  service="$(service_of "$peer")"
  container="$("${compose[@]}" ps -q "$service")"
  [[ -n "$container" ]] || die "node $id: no container for service $service"
  log "node $id: stopping service $service (SIGTERM, at most ${STOP_TIMEOUT_S}s)"
  "${compose[@]}" stop -t "$STOP_TIMEOUT_S" "$service" >&2
  code="$(docker inspect --format '{{.State.ExitCode}}' "$container")"
  if [[ "$code" != 0 ]]; then
    log "node $id: exited with status $code (see docker logs $container)"
  fi
  if (( recreate )); then
    log "node $id: recreating service $service"
    "${compose[@]}" up -d --no-deps --force-recreate "$service" >&2
  else
    log "node $id: starting service $service"
    "${compose[@]}" start "$service" >&2
  fi
}

# Moves leadership away from node $1 (bounded tries); returns non-zero if it
# still leads.
transfer_from() {
  local id="$1" try now
  for (( try = 1; try <= TRANSFER_TRIES_MAX; try++ )); do
    if "$cairn" cluster transfer-leader >&2; then
      now="$(leader || true)"
      [[ -n "$now" && "$now" != "$id" ]] && return 0
    fi
    log "leadership transfer from node $id failed (try $try of $TRANSFER_TRIES_MAX)"
    sleep 1
  done
  return 1
}

mapfile -t initial < <(members) || die "cannot read the membership (cairn cluster status)"
(( ${#initial[@]} > 0 )) || die "no members found"
(( ${#initial[@]} <= MEMBERS_MAX )) || die "more than $MEMBERS_MAX members"
declare -A peer_of=()
pending=()
for line in "${initial[@]}"; do
  read -r id peer _ <<< "$line"
  peer_of[$id]="$peer"
  pending+=("$id")
done

log "checking that every member is ready before restarting any"
for id in "${pending[@]}"; do
  "$cairn" cluster wait-ready "$id" --timeout-s "$timeout_s" >&2 \
    || die "node $id is not ready; not restarting anything"
done

restarted=0
while (( ${#pending[@]} > 0 )); do
  current="$(leader || true)"
  next=""
  for id in "${pending[@]}"; do
    if [[ "$id" != "$current" ]]; then next="$id"; break; fi
  done
  if [[ -z "$next" ]]; then
    next="$current"
    log "node $next leads; handing leadership over first"
    transfer_from "$next" || log "node $next still leads; restarting it anyway (the others elect a new leader)"
  fi
  restart_node "$next" "${peer_of[$next]}"
  "$cairn" cluster wait-ready "$next" --timeout-s "$timeout_s" >&2 \
    || die "node $next is not ready after its restart; stopping here"
  restarted=$(( restarted + 1 ))
  remaining=()
  for id in "${pending[@]}"; do
    [[ "$id" == "$next" ]] || remaining+=("$id")
  done
  pending=("${remaining[@]}")
done
log "restarted $restarted nodes; leader now: $(leader || echo unknown)"
