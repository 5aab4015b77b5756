"""`lep login -c ID:TOKEN -u URL` against cairn: the record it wrote, the calls it
makes (GET base, GET /workspace as WorkspaceInfo), and configuration through the
LEPTON_WORKSPACE_* variables alone for the clients that accept them (KV, the CLI)."""

import subprocess
import sys

from conftest import BASE_URL, TOKEN, WORKSPACE_ID, RECORD, lep, lep_env, unique


def test_login_wrote_the_record_for_this_node():
    assert RECORD["current_workspace"] == WORKSPACE_ID, RECORD
    entry = RECORD["workspaces"][WORKSPACE_ID]
    assert entry["url"] == BASE_URL, entry
    assert entry["auth_token"] == TOKEN


def test_base_and_workspace_info_parse(api):
    from leptonai.api.v1.types.workspace import WorkspaceInfo

    base = api.request("GET", "")
    # 2xx must be a JSON object with display_name (login aborts otherwise); non-2xx is fine.
    if base.status_code < 300:
        assert isinstance(base.json().get("display_name"), str), base.text
    info = api.request("GET", "/workspace")
    assert info.status_code == 200, (info.status_code, info.text)
    parsed = WorkspaceInfo(**info.json())
    # `lep workspace status` fetches and prints the same info.
    out = lep("workspace", "status")
    assert f"id:          {parsed.workspace_name}" in out.stdout, out.stdout


def test_env_vars_alone_configure_kv_and_the_cli(tmp_path, api):
    """No record at all: LEPTON_WORKSPACE_ID/TOKEN/URL are enough for KV and `lep`."""
    name = unique("envkv")
    created = api.request("POST", f"/kv/namespaces/{name}")
    assert created.status_code < 300, (created.status_code, created.text)
    put = api.request("POST", f"/kv/namespaces/{name}/values/k", files={"value": b"from-http"})
    assert put.status_code < 300, (put.status_code, put.text)
    empty_cache = tmp_path / "empty-cache"
    empty_cache.mkdir()
    (empty_cache / "latest_version_check").write_text("9999999999")
    env = lep_env({
        "LEPTON_CACHE_DIR": str(empty_cache),
        "LEPTON_WORKSPACE_ID": WORKSPACE_ID,
        "LEPTON_WORKSPACE_TOKEN": TOKEN,
        "LEPTON_WORKSPACE_URL": BASE_URL,
    })
    listed = lep("kv", "list", env=env)
    assert name in listed.stdout, listed.stdout
    script = (
        "from leptonai.kv import KV\n"
        f"kv = KV({name!r})\n"
        "assert kv.get('k') == b'from-http', kv.get('k')\n"
        "kv.put('k2', b'from-env')\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "ok" in done.stdout, (done.stdout, done.stderr)
    got = api.request("GET", f"/kv/namespaces/{name}/values/k2")
    assert (got.status_code, got.content) == (200, b"from-env")
    assert api.request("DELETE", f"/kv/namespaces/{name}").status_code < 300
