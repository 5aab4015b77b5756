"""`lep storage upload -r -p --rsync`: the CLI finds the node's rsync daemon through
`/deployments/storage-rsync-by-lepton[/replicas]` and runs the system `rsync` against
it. A tree with binary, empty, 256 KiB and odd-named files arrives byte-exact; after
one file changes, a second run's `-v` list names only that file."""

import os
import re

import pytest

from conftest import ODD_NAME, all_bytes, lep, unique

REMOTE = "/" + unique("rsync")
# The CLI runs rsync through /bin/sh without quoting: the local root must be a plain path.
TREE_FILES = {
    "binary.bin": all_bytes(),
    "empty": b"",
    "big/256k.bin": os.urandom(256 * 1024),
    ODD_NAME: b"odd name",
    "dir ü/changed ☃.txt": b"before the change",
    "deep/a/b/c/d.txt": b"deep",
}
CHANGED = "dir ü/changed ☃.txt"


def unescape_rsync(line):
    """rsync prints bytes it deems unprintable (here, UTF-8 in the C locale) as \\#ooo."""
    raw = re.sub(rb"\\#([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), line.encode())
    return raw.decode("utf-8", "replace")


def listed_paths(output, top):
    """Paths from rsync -v output below `top`/: files and directories ("x/")."""
    paths = []
    for line in output.splitlines():
        line = unescape_rsync(line.split("\r")[-1].rstrip("\n"))
        if line.startswith(top + "/") or line == top + "/":
            paths.append(line[len(top) + 1:])
    return paths


def remote_tree(api, path):
    """{relative path: bytes} of every file under `path`, and the set of directories."""
    files, dirs, pending = {}, set(), [""]
    while pending:
        rel = pending.pop()
        listing = api.request("GET", f"/storage/default{path}/{rel}".rstrip("/"))
        assert listing.status_code == 200, (rel, listing.status_code, listing.text)
        for entry in listing.json():
            child = f"{rel}{entry['name']}"
            if entry["type"] == "dir":
                dirs.add(child)
                pending.append(child + "/")
            else:
                got = api.request("GET", f"/storage/default{path}/{child}")
                assert got.status_code == 200, (child, got.status_code)
                files[child] = got.content
    return files, dirs


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("rsync") / "tree"
    assert " " not in str(root), root
    for rel, content in TREE_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    (root / "empty dir").mkdir()
    return root


def test_rsync_uploads_a_tree(api, tree):
    lep("storage", "mkdir", REMOTE)
    out = lep("storage", "upload", "-r", "-p", "--rsync", str(tree), REMOTE, timeout=300)
    assert "rsync://" in out.stdout, out.stdout
    sent = listed_paths(out.stdout, "tree")
    for rel in TREE_FILES:
        assert rel in sent, f"{rel!r} not in the rsync file list:\n{out.stdout}"
    files, dirs = remote_tree(api, f"{REMOTE}/tree")
    assert files == TREE_FILES
    assert "empty dir" in dirs and "deep/a/b/c" in dirs, dirs


def test_second_rsync_sends_only_the_changed_file(api, tree):
    changed = tree / CHANGED
    changed.write_bytes(b"after the change, a different length")
    os.utime(changed, (1_700_000_000, 1_700_000_000))
    out = lep("storage", "upload", "-r", "--rsync", str(tree), REMOTE, timeout=300)
    # Not a directory either: their times were kept by the first run.
    sent = listed_paths(out.stdout, "tree")
    assert sent == [CHANGED], f"expected only {CHANGED!r}, rsync listed {sent}:\n{out.stdout}"
    files, _ = remote_tree(api, f"{REMOTE}/tree")
    assert files == {**TREE_FILES, CHANGED: changed.read_bytes()}
    # A third run with nothing changed sends no file.
    again = lep("storage", "upload", "-r", "--rsync", str(tree), REMOTE, timeout=300)
    assert listed_paths(again.stdout, "tree") == [], again.stdout
    lep("storage", "rmdir", "-r", REMOTE)
