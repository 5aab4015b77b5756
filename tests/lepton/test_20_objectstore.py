"""Object storage through the SDK's `ObjectStore('private'|'public')` (api v0) and
`lep objectstore` (api v1): every snippet of the storage docs, byte-exact round trips
(all byte values, empty, 256 KiB, odd keys), URLs that work without a token, and
presigned URLs refused with 403 once any part of them is altered."""

import io
import os
import time
import urllib.parse

import pytest
import requests

from conftest import (
    HTTP_TIMEOUT_S,
    ODD_NAME,
    auth_headers,
    lep,
    payloads,
    unique,
)
from leptonai.objectstore import ObjectStore, PrivateObjectStore, PublicObjectStore

PREFIX = unique("obj") + "/"


def fetch(url, **kwargs):
    """GET with plain requests: no session, no Authorization header."""
    return requests.get(url, timeout=HTTP_TIMEOUT_S, **kwargs)


@pytest.mark.parametrize("bucket", ["private", "public"])
@pytest.mark.parametrize("label", list(payloads()))
def test_put_get_delete_round_trip(tmp_path, bucket, label):
    content = payloads()[label]
    store = ObjectStore(bucket)
    key = f"{PREFIX}{bucket}/{label}/{ODD_NAME}"
    local = tmp_path / "upload.bin"
    local.write_bytes(content)
    url = store.put(key, str(local))  # a path, as in the docs
    assert url.startswith("http"), url
    with store.get(key) as f:
        assert f.read() == content
    # The URL works with no token at all, byte for byte.
    got = fetch(url)
    assert (got.status_code, got.content) == (200, content)
    assert fetch(store.get(key, return_url=True)).content == content
    # A file object works as well as a path, and a second put overwrites.
    replaced = content[::-1] + b"+"
    store.put(key, io.BytesIO(replaced))
    with store.get(key) as f:
        assert f.read() == replaced
    store.delete(key)
    with pytest.raises(RuntimeError):
        store.get(key)
    assert key not in [item["key"] for item in store.list_objects(prefix=PREFIX)]


def test_return_url_is_a_900s_presigned_url(api):
    store = ObjectStore("private")
    key = f"{PREFIX}presigned/{ODD_NAME}"
    store.put(key, io.BytesIO(b"secret bytes"))
    url = store.get(key, return_url=True)
    assert fetch(url).content == b"secret bytes"
    # Still fine when a same-host redirect carries the bearer along.
    assert fetch(url, headers=auth_headers()).content == b"secret bytes"
    # The private bucket is not readable without the URL or a token.
    direct = api.request("GET", f"/object_storage/private_presigned/{key}", token=None)
    assert direct.status_code == 401
    numbers = [int(v) for _, v in query(url) if v.isdigit() and int(v) > 1_000_000_000]
    assert numbers, f"no expiry (Unix seconds) in the presigned URL {url}"
    remaining = max(numbers) - time.time()
    assert 840 <= remaining <= 960, f"expires in {remaining:.0f} s, expected about 900: {url}"
    store.delete(key)


def query(url):
    return urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True)


def with_query(url, pairs):
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(pairs)))


def altered_values(value):
    """Different values of the same form: an expiry moved both ways, a flipped digit."""
    if value.isdigit():
        return [str(int(value) - 1), str(int(value) + 3600)]
    def other(c):
        return "1" if c == "0" else "0"

    out = [value[:-1] + other(value[-1]), other(value[0]) + value[1:]]
    assert value not in out
    return out


def tampered_urls(url, key, other_key):
    """(what was altered, URL) for every query value and for the key."""
    out = []
    pairs = query(url)
    assert pairs, f"the presigned URL has no query: {url}"
    for i, (name, value) in enumerate(pairs):
        for changed in altered_values(value):
            copy = list(pairs)
            copy[i] = (name, changed)
            out.append((f"{name}={changed}", with_query(url, copy)))
    parts = urllib.parse.urlsplit(url)
    path = urllib.parse.unquote(parts.path)
    assert path.endswith(key), f"the key {key!r} is not at the end of {url}"
    other_path = urllib.parse.quote(path[: -len(key)] + other_key)
    out.append((f"key={other_key}", urllib.parse.urlunsplit(parts._replace(path=other_path))))
    return out


def test_altered_presigned_urls_are_refused_with_403(api):
    store = ObjectStore("private")
    key = f"{PREFIX}tamper/a ü.txt"
    other = f"{PREFIX}tamper/b ü.txt"
    store.put(key, io.BytesIO(b"the signed one"))
    store.put(other, io.BytesIO(b"another object"))
    url = store.get(key, return_url=True)
    assert fetch(url).content == b"the signed one"
    # Re-encoding the query unchanged keeps it valid, so each 403 below is the alteration's.
    assert fetch(with_query(url, query(url))).content == b"the signed one"
    for what, bad in tampered_urls(url, key, other):
        got = fetch(bad)
        assert got.status_code == 403, f"altered {what}: {bad} -> {got.status_code} {got.text[:200]!r}"
    # The upload URL handed out by PUT …_presigned is bound to its key just the same.
    upload = api.request("PUT", f"/object_storage/private_presigned/{key}")
    assert upload.status_code == 307, (upload.status_code, upload.text)
    assert upload.headers["Location"] == upload.json()["url"]
    for what, bad in tampered_urls(upload.json()["url"], key, other):
        got = requests.put(bad, data=b"forged", timeout=HTTP_TIMEOUT_S)
        assert got.status_code == 403, f"altered PUT {what}: {got.status_code} {got.text[:200]!r}"
    with store.get(other) as f:
        assert f.read() == b"another object"
    stored = requests.put(upload.json()["url"], data=b"via the upload URL", timeout=HTTP_TIMEOUT_S)
    assert stored.status_code < 300, (stored.status_code, stored.text)
    with store.get(key) as f:
        assert f.read() == b"via the upload URL"
    store.delete(key)
    store.delete(other)


def test_missing_objects_redirect_then_404_and_delete_is_idempotent():
    for bucket in ("private", "public"):
        store = ObjectStore(bucket)
        key = f"{PREFIX}never-written-{bucket}"
        url = store.get(key, return_url=True)
        assert fetch(url).status_code == 404, url
        with pytest.raises(RuntimeError, match="404"):
            store.get(key)
        store.delete(key)  # no error for a missing key


def test_public_urls_are_permanent_and_need_no_token():
    store = PublicObjectStore()
    key = f"{PREFIX}public/{ODD_NAME}"
    content = os.urandom(4096)
    url = store.put(key, io.BytesIO(content))
    assert fetch(url).content == content
    assert store.get(key, return_url=True) == url, "a public URL should not change between calls"
    store.delete(key)
    assert fetch(url).status_code == 404


def test_list_objects_with_prefix():
    store = PrivateObjectStore()
    prefix = f"{PREFIX}list ü/"
    keys = {f"{prefix}a.bin": b"a" * 10, f"{prefix}sub/b c.bin": b"", f"{prefix}z☃": b"z" * 300}
    outside = f"{PREFIX}list-outside.bin"
    before_ms = int(time.time() * 1000) - 60_000
    for key, content in keys.items():
        store.put(key, io.BytesIO(content))
    store.put(outside, io.BytesIO(b"x"))
    items = store.list_objects(prefix=prefix)
    assert sorted(item["key"] for item in items) == sorted(keys)
    for item in items:
        assert item["size"] == len(keys[item["key"]]), item
        assert before_ms <= item["last_modified"] <= time.time() * 1000 + 60_000, item
    everything = [item["key"] for item in store.list_objects()]
    assert set(keys) | {outside} <= set(everything)
    assert outside not in [item["key"] for item in ObjectStore("public").list_objects(prefix=PREFIX)]
    for key in [*keys, outside]:
        store.delete(key)
    assert store.list_objects(prefix=prefix) == []


@pytest.mark.parametrize("public", [False, True], ids=["private", "public"])
def test_lep_objectstore_put_get_list_delete(tmp_path, public):
    flag = ["--public"] if public else []
    prefix = f"{PREFIX}cli-{'public' if public else 'private'}/"
    key = prefix + "dir ü/f ☃.bin"
    content = payloads()["binary"] + os.urandom(1000)
    source = tmp_path / "source.bin"
    source.write_bytes(content)
    lep("objectstore", "put", "-k", key, "-f", str(source), *flag)
    target = tmp_path / "target.bin"
    lep("objectstore", "get", "-k", key, "-f", str(target), *(["-p"] if public else []))
    assert target.read_bytes() == content
    url_out = lep("objectstore", "get", "-k", key, "-u", *(["-p"] if public else []))
    url = next(w for w in url_out.stdout.split() if w.startswith("http"))
    assert fetch(url).content == content
    listed = lep("objectstore", "list", "-p", prefix, *flag)
    assert key in listed.stdout, listed.stdout
    assert "No objects found" not in listed.stdout
    # The SDK sees what the CLI wrote (the other API layer, same objects).
    with ObjectStore("public" if public else "private").get(key) as f:
        assert f.read() == content
    lep("objectstore", "delete", "-k", key, *flag)
    assert "No objects found" in lep("objectstore", "list", "-p", prefix, *flag).stdout
    # An empty file goes up and comes back empty.
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    lep("objectstore", "put", "-k", prefix + "empty", "-f", str(empty), *flag)
    back = tmp_path / "empty-back"
    lep("objectstore", "get", "-k", prefix + "empty", "-f", str(back), *(["-p"] if public else []))
    assert back.read_bytes() == b""
    lep("objectstore", "delete", "-k", prefix + "empty", *flag)
