#!/usr/bin/env bash
# Real programs on a cairn mount: run by tests/fs_mount.rs with the mount point,
# a source tree to copy and a local scratch directory. Every step checks its result;
# the first failure ends the script non-zero with the step on stderr.
set -euo pipefail
mnt=$1 src=$2 scratch=$3
step() { echo "--- $(date +%T.%N | cut -c1-12) $*" >&2; }

# A private copy of the source tree: the steps compare against it minutes later,
# and the tree given may be a working copy someone edits meanwhile.
cp -r "$src" "$scratch/source"
src="$scratch/source"

step "cp -r and diff -r"
cp -r "$src" "$mnt/tree"
diff -r "$src" "$mnt/tree"

step "tar x of many small files"
python3 - "$scratch/many" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(20):
    os.makedirs(f"{root}/d{d}", exist_ok=True)
    for f in range(100):
        with open(f"{root}/d{d}/f{f}.txt", "w") as out:
            out.write(f"file {d}/{f}\n" * (f % 7 + 1))
PY
tar cf "$scratch/many.tar" -C "$scratch" many
mkdir "$mnt/untar"
tar xf "$scratch/many.tar" -C "$mnt/untar"
diff -r "$scratch/many" "$mnt/untar/many"
test "$(find "$mnt/untar/many" -type f | wc -l)" -eq 2000

step "rsync -a in and out"
rsync -a "$src/" "$mnt/rsynced/"
rsync -a "$mnt/rsynced/" "$scratch/back/"
diff -r "$src" "$scratch/back"
# A second run finds nothing to send (sizes and mtimes kept).
sent=$(rsync -a --itemize-changes "$src/" "$mnt/rsynced/" | wc -l)
test "$sent" -eq 0

step "git init, add, commit, gc, clone"
(
  cd "$mnt"
  git init -q repo
  cd repo
  git config user.email ci@example.com
  git config user.name ci
  cp -r "$src" code
  git add .
  git commit -qm first
  echo change >> code/extra.txt
  git add .
  git commit -qm second
  git gc -q
  git fsck --no-progress 2>&1 | { ! grep -v "^Checking" ; }
)
git clone -q "$mnt/repo" "$mnt/clone"
test "$(git -C "$mnt/clone" log --oneline | wc -l)" -eq 2
diff -r "$src" "$mnt/clone/code" -x extra.txt

step "sqlite3, rollback journal and WAL"
sqlite3 "$mnt/db.sqlite" "create table t(a integer, b text);
  insert into t values (1, 'one'), (2, 'two');
  update t set b = 'deux' where a = 2;"
test "$(sqlite3 "$mnt/db.sqlite" "select group_concat(b) from t order by a;")" = "one,deux"
test "$(sqlite3 "$mnt/wal.sqlite" "pragma journal_mode=wal;")" = "wal"
sqlite3 "$mnt/wal.sqlite" "create table t(a); with recursive n(i) as (select 1 union all select i+1 from n where i < 1000) insert into t select i from n;"
test "$(sqlite3 "$mnt/wal.sqlite" "select sum(a) from t;")" = "500500"
sqlite3 "$mnt/wal.sqlite" "pragma integrity_check;" | grep -qx ok

step "mv over an existing file, ln, ln -s, chmod, touch -d, rm -r"
echo old > "$mnt/target"
echo new > "$mnt/incoming"
mv "$mnt/incoming" "$mnt/target"
test "$(cat "$mnt/target")" = new
test ! -e "$mnt/incoming"
ln "$mnt/target" "$mnt/hard"
test "$(stat -c %h "$mnt/target")" -eq 2
ln -s target "$mnt/soft"
test "$(readlink "$mnt/soft")" = target
test "$(cat "$mnt/soft")" = new
chmod 640 "$mnt/target"
test "$(stat -c %a "$mnt/hard")" = 640
touch -d "2001-02-03 04:05:06 UTC" "$mnt/target"
test "$(stat -c %Y "$mnt/target")" -eq 981173106
rm -r "$mnt/tree"
test ! -e "$mnt/tree"

step "df"
df -P "$mnt" | tail -1 | awk '{ exit !($2 > 0 && $4 > 0) }'

step "python writes, renames and os.replace"
python3 - "$mnt" <<'PY'
import os, sys
root = sys.argv[1]
os.makedirs(f"{root}/py/a", exist_ok=True)
for i in range(20):
    tmp = f"{root}/py/a/state.tmp"
    with open(tmp, "wb") as f:
        f.write(f"version {i}\n".encode() * 100)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, f"{root}/py/a/state")
with open(f"{root}/py/a/state", "rb") as f:
    assert f.read() == b"version 19\n" * 100
os.rename(f"{root}/py/a", f"{root}/py/b")
assert os.listdir(f"{root}/py") == ["b"]
assert sorted(os.listdir(f"{root}/py/b")) == ["state"]
with open(f"{root}/py/b/log", "a") as f:
    f.write("one\n")
with open(f"{root}/py/b/log", "a") as f:
    f.write("two\n")
assert open(f"{root}/py/b/log").read() == "one\ntwo\n"
# An unlinked file stays readable and writable through the handle that holds it.
f = open(f"{root}/py/b/gone", "w+b")
f.write(b"kept while open")
f.flush()
os.unlink(f"{root}/py/b/gone")
assert not os.path.exists(f"{root}/py/b/gone")
f.write(b", and after")
f.seek(0)
assert f.read() == b"kept while open, and after"
f.close()
# O_EXCL refuses an existing name; O_TRUNC empties; a sparse file reads zeros.
try:
    os.open(f"{root}/py/b/log", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    raise SystemExit("O_EXCL opened an existing file")
except FileExistsError:
    pass
os.close(os.open(f"{root}/py/b/log", os.O_WRONLY | os.O_TRUNC))
assert os.path.getsize(f"{root}/py/b/log") == 0
with open(f"{root}/py/b/sparse", "wb") as f:
    f.seek(3 * 1024 * 1024)
    f.write(b"end")
with open(f"{root}/py/b/sparse", "rb") as f:
    data = f.read()
assert len(data) == 3 * 1024 * 1024 + 3 and data[:-3] == bytes(3 * 1024 * 1024)
PY

step "flock within the mount"
touch "$mnt/lockfile"
flock -n "$mnt/lockfile" -c "! flock -n '$mnt/lockfile' -c true"
echo "all programs passed" >&2
