"""Every route of lepton-api.md §9 answers 401 with a `{"code","message"}` body when
the token is missing or wrong, before it looks at the resource: the resources the
requests name exist, and afterwards nothing was read away, written or deleted."""

import socket
import time
import urllib.parse

import pytest
import requests

from conftest import BASE_URL, TOKEN, error_json, unique

NS = unique("auth-ns")
QUEUE = unique("auth-q")
DIR = "/" + unique("auth-dir")
OBJECT = unique("auth-obj") + "/a b ü.txt"

# (method, path) of every route in §9, naming the resources made by `resources`.
ROUTES = [
    ("GET", ""),
    ("GET", "/tokens"),
    ("GET", "/workspace"),
    ("HEAD", f"/storage/default{DIR}/f.txt"),
    ("GET", f"/storage/default{DIR}/f.txt"),
    ("GET", f"/storage/default{DIR}"),
    ("POST", f"/storage/default{DIR}/f.txt"),
    ("PUT", f"/storage/default{DIR}/new-dir"),
    ("DELETE", f"/storage/default{DIR}/f.txt"),
    ("DELETE", f"/storage/default{DIR}?removeall=true"),
    ("GET", "/storage/du"),
    ("GET", "/storage"),
    ("GET", "/deployments/storage-rsync-by-lepton"),
    ("GET", "/deployments/storage-rsync-by-lepton/replicas"),
    ("PUT", f"/object_storage/private_presigned/{OBJECT}"),
    ("PUT", f"/object_storage/public_presigned/{OBJECT}"),
    ("GET", f"/object_storage/private_presigned/{OBJECT}"),
    ("GET", f"/object_storage/public/{OBJECT}"),
    ("DELETE", f"/object_storage/private/{OBJECT}"),
    ("DELETE", f"/object_storage/public/{OBJECT}"),
    ("GET", "/object_storage/private"),
    ("GET", "/object_storage/private/"),
    ("GET", "/object_storage/public"),
    ("GET", "/object_storage/public/"),
    ("GET", "/kv/namespaces"),
    ("GET", f"/kv/namespaces/{NS}"),
    ("POST", f"/kv/namespaces/{NS}"),
    ("DELETE", f"/kv/namespaces/{NS}"),
    ("GET", f"/kv/namespaces/{NS}/keys?cursor=0&limit=0"),
    ("GET", f"/kv/namespaces/{NS}/values/k"),
    ("POST", f"/kv/namespaces/{NS}/values/k"),
    ("DELETE", f"/kv/namespaces/{NS}/values/k"),
    ("GET", "/queue"),
    ("POST", "/queue"),
    ("DELETE", f"/queue/{QUEUE}"),
    ("GET", f"/queue/{QUEUE}/length"),
    ("GET", f"/queue/{QUEUE}/messages"),
    ("POST", f"/queue/{QUEUE}/messages"),
]

# Bodies as the SDK would send them, so a refusal cannot be blamed on a malformed request.
BODIES = {
    ("POST", f"/storage/default{DIR}/f.txt"): {"files": {"file": ("f.txt", b"overwritten")}},
    ("POST", f"/kv/namespaces/{NS}/values/k"): {"files": {"value": b"overwritten"}},
    ("POST", "/queue"): {"json": {"name": QUEUE + "-x"}},
    ("POST", f"/queue/{QUEUE}/messages"): {"json": {"message": "injected"}},
    ("PUT", f"/object_storage/private_presigned/{OBJECT}"): {"data": b"overwritten"},
    ("PUT", f"/object_storage/public_presigned/{OBJECT}"): {"data": b"overwritten"},
}


def ok(response):
    assert response.status_code < 300, (
        response.request.method, response.url, response.status_code, response.text
    )
    return response


@pytest.fixture(scope="module")
def resources(api):
    """One of each resource, made with the token, so each route has something to guard."""
    ok(api.request("POST", f"/kv/namespaces/{NS}"))
    ok(api.request("POST", f"/kv/namespaces/{NS}/values/k", files={"value": b"original"}))
    ok(api.request("POST", "/queue", json={"name": QUEUE}))
    ok(api.request("POST", f"/queue/{QUEUE}/messages", json={"message": "kept"}))
    ok(api.request("PUT", f"/storage/default{DIR}"))
    ok(api.request("POST", f"/storage/default{DIR}/f.txt", files={"file": ("f.txt", b"original")}))
    upload = api.request("PUT", f"/object_storage/private_presigned/{OBJECT}")
    assert upload.status_code == 307, (upload.status_code, upload.text)
    ok(requests.put(upload.json()["url"], data=b"original", timeout=60))
    yield
    api.request("DELETE", f"/kv/namespaces/{NS}")
    api.request("DELETE", f"/queue/{QUEUE}")
    api.request("DELETE", f"/storage/default{DIR}?removeall=true")
    api.request("DELETE", f"/object_storage/private/{OBJECT}")


@pytest.mark.parametrize("token", [None, "not-a-cairn-token"], ids=["no-token", "wrong-token"])
@pytest.mark.parametrize("method,path", ROUTES, ids=[f"{m} {p or '/'}" for m, p in ROUTES])
def test_401_without_a_valid_token(api, resources, method, path, token):
    response = api.request(method, path, token=token, **BODIES.get((method, path), {}))
    assert response.status_code == 401, (
        f"{method} {path} with token={token!r}: expected 401, got"
        f" {response.status_code} {response.text[:300]!r}"
    )
    if method != "HEAD":
        error_json(response)


def test_refused_calls_changed_nothing(api, resources):
    value = api.request("GET", f"/kv/namespaces/{NS}/values/k")
    assert (value.status_code, value.content) == (200, b"original")
    assert ok(api.request("GET", f"/queue/{QUEUE}/length")).json() == {"length": 1}
    assert QUEUE + "-x" not in [q["name"] for q in ok(api.request("GET", "/queue")).json()]
    stored = api.request("GET", f"/storage/default{DIR}/f.txt")
    assert (stored.status_code, stored.content) == (200, b"original")
    assert api.request("HEAD", f"/storage/default{DIR}/new-dir").status_code != 200
    link = api.request("GET", f"/object_storage/private_presigned/{OBJECT}")
    assert link.status_code in (302, 307), (link.status_code, link.text)
    fetched = requests.get(link.headers["Location"], timeout=60)
    assert (fetched.status_code, fetched.content) == (200, b"original")
    assert api.request("GET", f"/object_storage/public/{OBJECT}").status_code in (302, 307)
    public = requests.get(
        api.request("GET", f"/object_storage/public/{OBJECT}").headers["Location"], timeout=60
    )
    assert public.status_code == 404, "a refused PUT must not have created the public object"


def read_response(stream):
    """(status, lower-cased headers) of one HTTP/1.1 response with a Content-Length
    body, or None if the server closed the connection first."""
    status = stream.readline()
    if not status:
        return None
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    stream.read(int(headers.get("content-length", "0")))
    return int(status.split()[1]), headers


@pytest.mark.parametrize("body_delay_s", [0.0, 0.3], ids=["body-with-head", "body-after-head"])
def test_a_refused_request_leaves_the_connection_usable(body_delay_s):
    """The SDK keeps connections alive (requests.Session), and urllib3 sends a body
    in its own write. A 401 sent before the body arrived must either say
    `Connection: close` or leave the connection able to serve the next request."""
    url = urllib.parse.urlsplit(BASE_URL)
    body = b'{"name": "x"}'
    head = (
        f"POST {url.path}/queue HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    following = (
        f"GET {url.path}/workspace HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Authorization: Bearer {TOKEN}\r\n\r\n"
    ).encode()
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        stream = sock.makefile("rb")
        sock.sendall(head)
        time.sleep(body_delay_s)
        sock.sendall(body)
        first = read_response(stream)
        assert first is not None and first[0] == 401, first
        if first[1].get("connection", "").lower() == "close":
            return  # the client is told not to reuse it
        time.sleep(0.1)
        try:
            sock.sendall(following)
            second = read_response(stream)
        except OSError as e:
            second = e
    assert isinstance(second, tuple) and second[0] == 200, (
        f"after a 401 without `Connection: close`, the next request on the same"
        f" connection got {second!r} (the server closed it)"
    )
