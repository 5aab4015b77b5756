"""KV through the SDK's `KV` (api v1) and `lep kv`: the documented calls, `x[k]`,
`keys()` paging, byte-exact values under odd keys, KeyError for a missing key, the
32 KiB key and 256 KiB value limits at the limit and one byte over, and a value put
by the SDK read back with the gRPC CLI (`cairn kv get`).

One namespace is made with `KV.create_kv` (it sleeps 10 s by design); the others
come from the CLI or raw HTTP to keep the suite short."""

import re

import pytest

from conftest import KIB, ODD_NAME, all_bytes, assert_names_limit, cairn, lep, payloads, unique
from leptonai.kv import KV

NAME = unique("kv")
KEY_BYTES_MAX = 32 * KIB
VALUE_BYTES_MAX = 256 * KIB


@pytest.fixture(scope="module")
def kv():
    return KV.create_kv(NAME)


def test_create_get_list_kv(kv):
    assert NAME in KV.list_kv()
    again = KV.get_kv(NAME)
    kv.put("shared", "written by one handle")
    assert again.get("shared") == b"written by one handle"
    # The docs' form: an existing KV is opened, not created again.
    assert KV(NAME, create_if_not_exists=True).get("shared") == b"written by one handle"
    with pytest.raises(ValueError):
        KV.create_kv(NAME)  # exists
    with pytest.raises(ValueError):
        KV.get_kv(unique("no-such-kv"))


def test_put_get_delete_and_item_syntax(kv):
    kv.put("greeting", "héllo wörld")
    assert kv.get("greeting") == "héllo wörld".encode()
    kv["greeting"] = b"\x00bytes\xff"
    assert kv["greeting"] == b"\x00bytes\xff"
    del kv["greeting"]
    with pytest.raises(KeyError):
        kv["greeting"]
    kv.delete("greeting")  # deleting a missing key is not an error
    with pytest.raises(KeyError):
        kv.get(unique("never-written"))


@pytest.mark.parametrize("label", list(payloads()))
def test_values_round_trip_byte_exact(kv, label):
    value = payloads()[label]
    for key in (f"exact/{label}", f"{ODD_NAME}/{label}"):
        kv.put(key, value)
        assert kv.get(key) == value, key
        assert key in kv.keys(prefix=key).keys
    assert kv.get(f"{ODD_NAME}/{label}") == value


def test_keys_paging_with_limit(kv):
    prefix = "page/"
    names = [f"{prefix}{i} ü" for i in range(5)]
    for name in names:
        kv.put(name, name)
    kv.put("pagf-outside", "x")
    everything = kv.keys(prefix=prefix)  # limit=0: no limit
    assert sorted(everything.keys) == sorted(names)
    assert everything.cursor is None
    seen, cursor, pages = [], 0, 0
    while True:
        page = kv.keys(cursor=cursor, limit=2, prefix=prefix)
        pages += 1
        assert len(page.keys) <= 2, page
        seen += page.keys
        if page.cursor is None:
            break
        assert pages < 10, "the cursor never ran out"
        cursor = page.cursor
    assert sorted(seen) == sorted(names) and len(seen) == len(names)
    assert pages == 3
    # A page that ends exactly at the last key already has a null cursor.
    kv.delete(names[-1])
    first = kv.keys(cursor=0, limit=2, prefix=prefix)
    assert first.cursor is not None
    second = kv.keys(cursor=first.cursor, limit=2, prefix=prefix)
    assert len(second.keys) == 2 and second.cursor is None, second
    assert sorted(first.keys + second.keys) == sorted(names[:-1])


def test_key_limit_32kib(kv, api):
    at_limit = "k" * KEY_BYTES_MAX
    # KV.put refuses keys over 256 characters client-side; its transport does not.
    kv._api_client.kv.put(NAME, at_limit, b"long key")
    assert kv.get(at_limit) == b"long key"
    over = at_limit + "k"
    refused = api.request("POST", f"/kv/namespaces/{NAME}/values/{over}", files={"value": b"x"})
    assert_names_limit(refused, KEY_BYTES_MAX)
    assert kv.keys(prefix="k" * 1000).keys == [at_limit], "the refused key must not exist"
    kv.delete(at_limit)


def test_value_limit_256kib(kv, api):
    at_limit = bytes(range(256)) * (VALUE_BYTES_MAX // 256)
    assert len(at_limit) == VALUE_BYTES_MAX
    kv.put("big", at_limit)
    assert kv.get("big") == at_limit
    refused = api.request(
        "POST", f"/kv/namespaces/{NAME}/values/big", files={"value": at_limit + b"!"}
    )
    assert refused.status_code == 413, (refused.status_code, refused.text[:300])
    assert_names_limit(refused, VALUE_BYTES_MAX)
    assert kv.get("big") == at_limit, "a refused put must leave the old value"


def test_grpc_cli_reads_a_value_put_by_the_sdk(kv):
    value = all_bytes()
    kv.put(ODD_NAME, value)
    got = cairn("kv", "get", NAME, ODD_NAME, binary=True).stdout
    assert got == value


def test_lep_kv_commands(tmp_path):
    name = unique("cli-kv")
    lep("kv", "create", "-n", name)
    listed = lep("kv", "list", "--pattern", re.escape(name))
    assert name in listed.stdout, listed.stdout
    assert NAME not in listed.stdout, "--pattern should filter the list"
    # A new namespace has no keys: an empty page with a null cursor.
    empty = KV.get_kv(name).keys()
    assert (empty.keys, empty.cursor) == ([], None)
    key = "cli dir ü/key ☃"
    lep("kv", "putkey", "-n", name, "-k", key, "-v", "välue with spaces")
    got = lep("kv", "getkey", "-n", name, "-k", key)
    assert repr("välue with spaces".encode()) in got.stdout, got.stdout
    assert KV.get_kv(name).get(key) == "välue with spaces".encode()
    lep("kv", "deletekey", "-n", name, "-k", key)
    missing = lep("kv", "getkey", "-n", name, "-k", key, check=False)
    assert missing.returncode != 0, missing.stdout
    lep("kv", "remove", "-n", name)
    assert name not in KV.list_kv()
    assert name not in lep("kv", "list").stdout


def test_delete_kv(kv, api):
    kv.put("last", "value")
    KV.delete_kv(kv)
    assert NAME not in KV.list_kv()
    assert api.request("GET", f"/kv/namespaces/{NAME}").status_code == 404
    with pytest.raises(ValueError):
        KV.get_kv(NAME)
    gone = api.request("GET", f"/kv/namespaces/{NAME}/values/last")
    assert gone.status_code == 404, (gone.status_code, gone.text)
