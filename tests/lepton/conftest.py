"""Shared setup for the Lepton compatibility suite: the official `leptonai` SDK and
`lep` CLI (0.27.3), unmodified, against one cairn node's `/api/v1`.

Owns: reading the run's environment (set by tests/lepton_sdk.rs, or by hand), the
fixtures every test file uses (raw HTTP session, `lep` and `cairn` runners, unique
names, payloads) and the helpers that check error bodies. It leaves the cluster,
the token and `lep login` to the caller: by the time this file is imported the
login record must exist, because `leptonai` reads it once at import time (Queue and
ObjectStore use only that record).

Environment:
  CAIRN_URL            API base of the node under test, e.g. http://127.0.0.1:PORT/api/v1
  CAIRN_TOKEN          a cairn API token (the same one `lep login` was given)
  CAIRN_WORKSPACE_ID   the workspace id the node was started with (default: the record's)
  LEPTON_CACHE_DIR     where `lep login` wrote workspace_info.yaml (never ~/.cache)
  CAIRN_BIN            the `cairn` binary, for the gRPC cross-checks
  CAIRN_GRPC_ADDR      gRPC endpoint(s) for those cross-checks (comma-separated)
  CAIRN_NODE_PID       pid of the node behind CAIRN_URL (its RSS is sampled)
  CAIRN_LEPTON_SKIP_LARGE=1   skip the >= 512 MiB upload (it runs by default)
  CAIRN_LEPTON_LARGE_MIB      size of that upload (default 512)
  CAIRN_LEPTON_RSS_MAX_MIB    the node's RSS bound during it (default 400)
"""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

CACHE_DIR = os.environ.get("LEPTON_CACHE_DIR")
if not CACHE_DIR:
    # Importing leptonai without it would read and write ~/.cache/lepton.
    raise pytest.UsageError("LEPTON_CACHE_DIR must point at the temp dir `lep login` wrote to")
# The CLI asks the public package index once a day whether a newer release exists;
# a fresh check time in its cache file skips that (no network in tests).
Path(CACHE_DIR).mkdir(parents=True, exist_ok=True)
(Path(CACHE_DIR) / "latest_version_check").write_text(str(time.time() + 10 * 365 * 86400))

import requests  # noqa: E402  (after LEPTON_CACHE_DIR is checked)
import yaml  # noqa: E402


def _require(name):
    value = os.environ.get(name)
    if not value:
        raise pytest.UsageError(f"environment variable {name} is required")
    return value


BASE_URL = _require("CAIRN_URL").rstrip("/")
TOKEN = _require("CAIRN_TOKEN")
RECORD = yaml.safe_load((Path(CACHE_DIR) / "workspace_info.yaml").read_text())
WORKSPACE_ID = os.environ.get("CAIRN_WORKSPACE_ID") or RECORD["current_workspace"]
# Names unique to this run, so a rerun against the same cluster starts clean.
RUN = uuid.uuid4().hex[:8]
LEP = str(Path(sys.executable).parent / "lep")
KIB = 1024
MIB = 1024 * KIB
# Every HTTP call of the suite is bounded (the SDK itself uses 120 s).
HTTP_TIMEOUT_S = 60


def unique(label):
    """A resource name that no other test or run uses."""
    return f"t{RUN}-{label}"


def auth_headers(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


class Api:
    """Raw HTTP against the API base with the token, for what the SDK hides or refuses."""

    def __init__(self):
        self.session = requests.Session()

    def url(self, path):
        return BASE_URL + path

    def request(self, method, path, token=TOKEN, **kwargs):
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers.update(auth_headers(token))
        kwargs.setdefault("timeout", HTTP_TIMEOUT_S)
        kwargs.setdefault("allow_redirects", False)
        return self.session.request(method, self.url(path), headers=headers, **kwargs)


@pytest.fixture(scope="session")
def api():
    return Api()


def error_json(response):
    """The `{"code","message"}` body of an error response (asserts its shape)."""
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(
            f"{response.request.method} {response.url}: {response.status_code} with a"
            f" non-JSON body {response.text[:300]!r}; expected {{\"code\",\"message\"}}"
        )
    assert isinstance(body, dict), body
    assert isinstance(body.get("code"), str) and body["code"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    return body


def assert_names_limit(response, limit_bytes):
    """A 4xx whose JSON body names the limit (as a number or in KiB)."""
    assert 400 <= response.status_code < 500, (
        f"{response.request.method} {response.url[:120]}: expected a 4xx for a request"
        f" over the {limit_bytes}-byte limit, got {response.status_code} {response.text[:300]!r}"
    )
    body = error_json(response)
    text = json.dumps(body)
    names = (
        str(limit_bytes) in text
        or f"{limit_bytes // KIB} KiB" in text
        or f"{limit_bytes // KIB}KiB" in text
    )
    assert names, f"the error body does not name the {limit_bytes}-byte limit: {body}"
    return body


def describe(process):
    return (
        f"exit {process.returncode}\n--- stdout ---\n{process.stdout}\n"
        f"--- stderr ---\n{process.stderr}"
    )


def _run(argv, check, timeout, env=None, cwd=None, binary=False):
    try:
        process = subprocess.run(
            argv,
            capture_output=True,
            timeout=timeout,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{argv} did not finish within {timeout} s: {e.stdout!r} {e.stderr!r}")
    if not binary:
        process.stdout = process.stdout.decode("utf-8", "replace")
    process.stderr = process.stderr.decode("utf-8", "replace")
    if check:
        assert process.returncode == 0, f"{argv}: {describe(process)}"
    return process


def lep_env(extra=None):
    """The CLI's environment: the login record only (no LEPTON_WORKSPACE_* overrides),
    and a console wide enough that rich never wraps a name."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LEPTON_WORKSPACE_ID", "LEPTON_WORKSPACE_TOKEN", "LEPTON_WORKSPACE_URL")
    }
    env["COLUMNS"] = "4000"
    env["LEPTON_CACHE_DIR"] = CACHE_DIR
    env.update(extra or {})
    return env


def lep(*args, check=True, timeout=180, env=None, cwd=None):
    """Runs `lep ARGS...`; with check, asserts exit 0."""
    return _run([LEP, *args], check, timeout, env=env or lep_env(), cwd=cwd)


def cairn(*args, check=True, timeout=180, binary=False):
    """Runs the cairn gRPC CLI against CAIRN_GRPC_ADDR with the token; with binary,
    stdout stays bytes."""
    program = _require("CAIRN_BIN")
    endpoints = _require("CAIRN_GRPC_ADDR")
    env = dict(os.environ)
    env["CAIRN_TOKEN"] = TOKEN
    return _run([program, "--endpoints", endpoints, *args], check, timeout, env=env, binary=binary)


def all_bytes():
    """Every byte value, several times over, in a non-repeating order."""
    return bytes(range(256)) * 3 + bytes(reversed(range(256)))


def payloads():
    """The byte-exactness cases: label -> content."""
    return {
        "binary": all_bytes(),
        "empty": b"",
        "256KiB": os.urandom(256 * KIB),
    }


# Names with spaces, non-ASCII characters and slashes (keys and paths alike).
ODD_NAME = "dir ü/sub dir/naïve ☃ file – ñ.bin"
