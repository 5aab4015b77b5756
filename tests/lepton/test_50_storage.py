"""The file system through `lep storage` (api v1 paths): upload, download, ls, mkdir,
rm, rmdir [-r], byte-exact files (all byte values, empty, 256 KiB) under names with
spaces, non-ASCII characters and nested directories, the exact HEAD status the CLI
relies on, and a file uploaded by `lep` read back with `cairn storage download`."""

import os
import re

import pytest

from conftest import ODD_NAME, all_bytes, cairn, lep, payloads, unique

ROOT = "/" + unique("fs")


@pytest.fixture(scope="module")
def root():
    lep("storage", "mkdir", ROOT)
    yield ROOT
    lep("storage", "rmdir", "-r", ROOT, check=False)


def mkdirs(api, path):
    """Makes each ancestor of `path` over raw HTTP (setup only: the CLI never makes
    parents, and `lep storage mkdir` is tested on its own)."""
    parts = path.strip("/").split("/")[:-1]
    for i in range(1, len(parts) + 1):
        made = api.request("PUT", "/storage/default/" + "/".join(parts[:i]))
        assert made.status_code < 300, (parts[:i], made.status_code, made.text)


@pytest.mark.parametrize("label", list(payloads()))
def test_upload_download_byte_exact(api, tmp_path, root, label):
    content = payloads()[label]
    local = tmp_path / f"local {label} ü.bin"
    local.write_bytes(content)
    remote = f"{root}/{label}/{ODD_NAME}"
    mkdirs(api, remote)
    lep("storage", "upload", str(local), remote)
    # Into a local directory: the file gets the remote basename.
    lep("storage", "download", remote, str(tmp_path))
    assert (tmp_path / remote.rsplit("/", 1)[1]).read_bytes() == content


def test_upload_to_a_directory_keeps_the_local_name_and_overwrites(tmp_path, root):
    local = tmp_path / "naïve name ☃.txt"
    local.write_bytes(b"first")
    lep("storage", "mkdir", f"{root}/into")
    lep("storage", "upload", str(local), f"{root}/into/")
    local.write_bytes(b"second, longer content")
    lep("storage", "upload", str(local), f"{root}/into/")
    back = tmp_path / "back"
    lep("storage", "download", f"{root}/into/naïve name ☃.txt", str(back))
    assert back.read_bytes() == b"second, longer content"


def test_head_is_exactly_200_for_files_and_dirs(api, root, tmp_path):
    local = tmp_path / "h"
    local.write_bytes(b"head")
    lep("storage", "upload", str(local), f"{root}/head me.txt")
    for path in (f"{root}/head me.txt", root, f"{root}/", "/"):
        got = api.request("HEAD", f"/storage/default{path}")
        assert got.status_code == 200, (path, got.status_code)
    assert api.request("HEAD", f"/storage/default{root}/absent").status_code != 200
    missing = lep("storage", "ls", f"{root}/absent", check=False)
    assert missing.returncode == 1 and "not found" in missing.stdout, missing.stdout


def test_ls_lists_a_tree_level(tmp_path):
    base = "/" + unique("ls")
    lep("storage", "mkdir", base)
    for name in ("sub ü", "other"):
        lep("storage", "mkdir", f"{base}/{name}")
    for name in ("a.txt", "b ☃.bin", "c"):
        local = tmp_path / "f"
        local.write_bytes(name.encode())
        lep("storage", "upload", str(local), f"{base}/{name}")
    out = lep("storage", "ls", base).stdout
    for name in ("sub ü/", "other/", "a.txt", "b ☃.bin", "c"):
        assert re.search(rf"\s{re.escape(name)}$", out, re.M), f"{name!r} missing in\n{out}"
    assert "2 directories, 3 files" in out, out
    empty = lep("storage", "ls", f"{base}/other").stdout
    assert "0 directories, 0 files" in empty, empty
    root = lep("storage", "ls", "/").stdout
    assert re.search(rf"\s{re.escape(base[1:])}/$", root, re.M), root
    lep("storage", "rmdir", "-r", base)


def test_rm_and_rmdir(api, tmp_path):
    base = "/" + unique("rm")
    lep("storage", "mkdir", base)
    lep("storage", "mkdir", f"{base}/full dir")
    local = tmp_path / "x"
    local.write_bytes(b"x")
    lep("storage", "upload", str(local), f"{base}/full dir/x ü")
    lep("storage", "upload", str(local), f"{base}/file")
    # rm refuses a directory, rmdir a file (client-side checks on the parent listing).
    assert lep("storage", "rm", f"{base}/full dir", check=False).returncode == 1
    assert lep("storage", "rmdir", f"{base}/file", check=False).returncode == 1
    lep("storage", "rm", f"{base}/file")
    assert api.request("HEAD", f"/storage/default{base}/file").status_code != 200
    # A non-empty directory needs -r: the server refuses with a 4xx and keeps it.
    refused = lep("storage", "rmdir", f"{base}/full dir", check=False)
    assert refused.returncode == 1, refused.stdout
    assert api.request("HEAD", f"/storage/default{base}/full dir/x ü").status_code == 200
    direct = api.request("DELETE", f"/storage/default{base}/full dir")
    assert 400 <= direct.status_code < 500, (direct.status_code, direct.text)
    lep("storage", "rmdir", "-r", f"{base}/full dir")
    assert api.request("HEAD", f"/storage/default{base}/full dir").status_code != 200
    # An empty directory goes without -r.
    lep("storage", "mkdir", f"{base}/empty")
    lep("storage", "rmdir", f"{base}/empty")
    lep("storage", "rmdir", base)
    assert api.request("HEAD", f"/storage/default{base}").status_code != 200


def test_du_and_file_systems():
    assert "Total disk usage" in lep("storage", "du").stdout
    assert "default" in lep("storage", "ls-file-system").stdout


def test_grpc_cli_downloads_a_file_uploaded_by_lep(api, tmp_path, root):
    content = all_bytes() + os.urandom(3 * 1024 * 1024 + 17)
    local = tmp_path / "up.bin"
    local.write_bytes(content)
    remote = f"{root}/grpc/{ODD_NAME}"
    mkdirs(api, remote)
    lep("storage", "upload", str(local), remote)
    back = tmp_path / "via-grpc.bin"
    cairn("storage", "download", remote, str(back))
    assert back.read_bytes() == content
