#!/bin/bash
# Reproduction (fixed; kept to show the behaviour): a cairn follower whose disk
# fills up (ENOSPC) stops its Raft core for good; freeing the space does not bring
# it back (sled keeps the I/O error). It used to keep running as a member that could
# never work again; now the process exits non-zero ("raft stopped"), so a supervisor
# restarts it on its data. The last lines below show whether node 3 is still alive.
# Found by `cairn-jepsen run --nemesis disk-full`. Needs root (tmpfs mount).
#
#   sudo jepsen/repro/enospc-follower-stays-dead.sh [path/to/cairn]
set -u
export NO_COLOR=1
CAIRN=${1:-target/debug/cairn}
DIR=$(mktemp -d /tmp/cairn-enospc.XXXXXX)
PEERS=1=127.0.0.1:7611,2=127.0.0.1:7612,3=127.0.0.1:7613
EP=127.0.0.1:7611,127.0.0.1:7612,127.0.0.1:7613
PIDS=()
cleanup() {
    kill "${PIDS[@]}" 2>/dev/null; wait 2>/dev/null
    umount "$DIR/3" 2>/dev/null; rm -rf "$DIR"
}
trap cleanup EXIT
mkdir -p "$DIR/1" "$DIR/2" "$DIR/3"
mount -t tmpfs -o size=64m tmpfs "$DIR/3" || { echo "cannot mount a tmpfs"; exit 2; }
for i in 1 2 3; do
    "$CAIRN" server --id $i --data-dir "$DIR/$i" --grpc-addr 127.0.0.1:761$i \
        --http-addr 127.0.0.1:768$i --peers $PEERS >"$DIR/log$i" 2>&1 &
    PIDS+=($!)
done
for _ in $(seq 1 60); do "$CAIRN" --endpoints $EP kv create ns >/dev/null 2>&1 && break; sleep 0.5; done
echo "--- healthy:"; "$CAIRN" --endpoints $EP cluster status
# Fill node 3's disk, then write: node 3 hits ENOSPC applying or appending.
dd if=/dev/zero of="$DIR/3/filler" bs=1M 2>/dev/null
for k in $(seq 1 50); do "$CAIRN" --endpoints $EP kv put ns k$k "value $k" >/dev/null; done
sleep 2
rm -f "$DIR/3/filler"; echo "--- filler deleted (space is free again): $(df -h "$DIR/3" | tail -1)"
for k in $(seq 51 100); do "$CAIRN" --endpoints $EP kv put ns k$k "value $k" >/dev/null; done
sleep 5
echo "--- 5 s after freeing the space:"; "$CAIRN" --endpoints $EP cluster status
echo "--- node 3 process alive: $(kill -0 "${PIDS[2]}" 2>/dev/null && echo yes || echo no)"
grep -m3 -E "No space left|quit RaftCore" "$DIR/log3"
