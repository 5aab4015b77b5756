"""The dashboard, page by page, in headless Chromium against a 3-node cluster.

Each test acts through the page as a user would (clicks, file pickers, drag
and drop, dialogs) and then checks the outcome through the REST API or by
fetching what the page handed out. Tests run in file order and share one
browser session; the last one kills the leader."""

import hashlib
import json
import os
import signal
import time
import uuid

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from conftest import wait_until

CSS = By.CSS_SELECTOR
NEW_LEADER_WAIT_S = 30


def shot(browser, cluster, name):
    path = os.path.join(cluster.screenshots, name)
    browser.save_screenshot(path)
    return path


def find(browser, selector):
    return browser.find_element(CSS, selector)


def finds(browser, selector):
    return browser.find_elements(CSS, selector)


def visible(browser, selector):
    found = finds(browser, selector)
    return found[0] if found and found[0].is_displayed() else None


def row(browser, selector):
    return wait_until(lambda: visible(browser, selector), f"a row {selector}")


def gone(browser, selector):
    wait_until(lambda: not finds(browser, selector), f"{selector} to disappear")


def answer_prompt(browser, text):
    field = wait_until(lambda: visible(browser, "#prompt-input"), "the prompt dialog")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.BACKSPACE)
    field.send_keys(text)
    field.send_keys(Keys.ENTER)
    gone(browser, "#prompt-input")


def confirm(browser):
    button = wait_until(lambda: visible(browser, "dialog button[value=yes]"), "the confirm dialog")
    button.click()
    gone(browser, "dialog button[value=yes]")


def error_notice(browser):
    """The page's notice if it shows an error (an earlier success notice may
    still be on screen for a few seconds)."""
    box = find(browser, "#notice")
    shown = box.is_displayed() and "error" in (box.get_attribute("class") or "").split()
    return box.text if shown else ""


def random_bytes(n, seed):
    out = bytearray()
    block = seed.encode()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out.extend(block)
    return bytes(out[:n])


def sign_in(browser, url, token):
    browser.get(url + "/")
    field = wait_until(lambda: visible(browser, "#token"), "the sign-in form")
    field.clear()
    field.send_keys(token)
    field.send_keys(Keys.ENTER)


def multipart(field, data):
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"v\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


# ---- sign-in and what a page shows without a token ----

PROTECTED = [
    "/api/v1/cairn/node",
    "/api/v1/cairn/cluster",
    "/api/v1/cairn/storage",
    "/api/v1/cairn/storage/default/entries?path=/",
    "/api/v1/storage/default/",
    "/api/v1/cairn/objects/private",
    "/api/v1/cairn/objects/private/url?key=x",
    "/api/v1/cairn/queues",
    "/api/v1/cairn/queues/q/peek",
    "/api/v1/kv/namespaces",
    "/api/v1/queue",
    "/api/v1/cairn/imports",
    "/api/status",
]


def test_without_a_token_nothing_is_readable(browser, cluster, api):
    status, page, headers = api.call("GET", "/", token=False)
    assert status == 200
    html = page.decode()
    for node in cluster.nodes:
        assert node.http not in html, "the page itself carries cluster data"
    assert "script-src 'self'" in headers.get("Content-Security-Policy", "")
    for path in PROTECTED:
        status, body, _ = api.call("GET", path, token=False)
        assert status == 401, f"GET {path} without a token answered {status}: {body[:200]!r}"
        assert json.loads(body).get("code") or json.loads(body).get("error"), body
        status, _, _ = api.call("GET", path, token=False, headers={"Authorization": "Bearer not-a-token"})
        assert status == 401, f"GET {path} with a wrong token answered {status}"
    browser.get(cluster.url + "/#/kv")
    wait_until(lambda: visible(browser, "#token"), "the sign-in form")
    assert not find(browser, "#nav").is_displayed()
    for section in ("files", "objects", "kv", "queues", "cluster"):
        assert find(browser, f"#{section}").get_attribute("innerHTML").strip() == ""


def test_a_wrong_token_is_refused(browser, cluster):
    sign_in(browser, cluster.url, "cairn_wrong_token")
    message = wait_until(lambda: find(browser, "#sign-in-error").text, "the sign-in error")
    assert "refused" in message, message
    assert not find(browser, "#nav").is_displayed()
    shot(browser, cluster, "sign-in.png")


def test_sign_in_and_out(browser, cluster):
    sign_in(browser, cluster.url, cluster.token)
    wait_until(lambda: visible(browser, "#nav"), "the navigation after sign-in")
    assert f"node {cluster.serving}" in find(browser, "#whoami").text
    find(browser, "#sign-out").click()
    wait_until(lambda: visible(browser, "#token"), "the sign-in form after sign-out")
    assert browser.execute_script("return sessionStorage.length") == 0
    browser.refresh()
    wait_until(lambda: visible(browser, "#token"), "the sign-in form after a reload")
    sign_in(browser, cluster.url, cluster.token)
    wait_until(lambda: visible(browser, "#nav"), "the navigation after signing in again")


# ---- file systems ----

def test_files(browser, cluster, api, tmp_path, downloads):
    browser.get(cluster.url + "/#/files")
    wait_until(lambda: finds(browser, "#fs-select option[value=default]"), "the default file system")
    single = tmp_path / "hello wörld.bin"
    single.write_bytes(random_bytes(200 * 1024 + 7, "single"))
    tree = tmp_path / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    nested = {
        "a.txt": b"alpha\n",
        "sub/b.bin": random_bytes(300 * 1024, "b"),
        "sub/deeper/c ü.txt": "gamma ü\n".encode(),
    }
    for name, data in nested.items():
        (tree / name).write_bytes(data)

    find(browser, "#upload-files").send_keys(str(single))
    row(browser, 'tr[data-name="hello wörld.bin"]')
    find(browser, "#upload-folder").send_keys(str(tree))
    row(browser, 'tr[data-name="tree"][data-type="dir"]')
    wait_until(lambda: len(finds(browser, "#transfers li.done")) == 4, "four finished uploads")
    assert not finds(browser, "#transfers li.failed")
    for name, data in nested.items():
        status, body, _ = api.call("GET", "/api/v1/storage/default/tree/" + urlpath(name))
        assert status == 200 and body == data, f"tree/{name}: {status}, {len(body)} bytes"

    # Browse with the listing and the breadcrumbs.
    find(browser, 'tr[data-name="tree"] button.dir').click()
    row(browser, 'tr[data-name="sub"]').find_element(CSS, "button.dir").click()
    row(browser, 'tr[data-name="b.bin"]')
    crumbs = [li.text for li in finds(browser, "#breadcrumbs li")]
    assert crumbs == ["default", "tree", "sub"], crumbs
    find(browser, "#breadcrumbs li:first-child button").click()
    row(browser, 'tr[data-name="hello wörld.bin"]')

    # Download through the page and compare bytes.
    row(browser, 'tr[data-name="hello wörld.bin"]').find_element(CSS, "button[aria-label^=Download]").click()
    target = downloads / "hello wörld.bin"
    wait_until(lambda: target.exists() and target.stat().st_size == single.stat().st_size, "the download", 30)
    assert target.read_bytes() == single.read_bytes()

    # New folder, then delete it.
    find(browser, "#new-folder").click()
    answer_prompt(browser, "made here")
    row(browser, 'tr[data-name="made here"][data-type="dir"]')
    status, _, _ = api.call("HEAD", "/api/v1/storage/default/made%20here")
    assert status == 200
    row(browser, 'tr[data-name="made here"]').find_element(CSS, "button.danger").click()
    confirm(browser)
    gone(browser, 'tr[data-name="made here"]')
    status, _, _ = api.call("HEAD", "/api/v1/storage/default/made%20here")
    assert status == 404

    # Rename.
    row(browser, 'tr[data-name="hello wörld.bin"]').find_element(CSS, "button[aria-label^=Rename]").click()
    answer_prompt(browser, "renamed.bin")
    row(browser, 'tr[data-name="renamed.bin"]')
    gone(browser, 'tr[data-name="hello wörld.bin"]')
    status, body, _ = api.call("GET", "/api/v1/storage/default/renamed.bin")
    assert status == 200 and body == single.read_bytes()
    # Renaming onto an existing name is refused with the server's message.
    row(browser, 'tr[data-name="renamed.bin"]').find_element(CSS, "button[aria-label^=Rename]").click()
    answer_prompt(browser, "tree")
    message = wait_until(lambda: error_notice(browser), "the refusal of a rename onto a folder")
    assert "exists" in message.lower(), message

    # Drag and drop a real file onto the listing (the browser's own drop).
    dropped = tmp_path / "dropped.txt"
    dropped.write_bytes(b"dropped here\n")
    zone = find(browser, "#drop-zone")
    box = browser.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.x + r.width / 2, r.y + 20];", zone)
    data = {"items": [], "files": [str(dropped)], "dragOperationsMask": 1}
    for kind in ("dragEnter", "dragOver", "drop"):
        browser.execute_cdp_cmd("Input.dispatchDragEvent", {"type": kind, "x": box[0], "y": box[1], "data": data})
    row(browser, 'tr[data-name="dropped.txt"]')
    status, body, _ = api.call("GET", "/api/v1/storage/default/dropped.txt")
    assert status == 200 and body == b"dropped here\n"

    usage = find(browser, "#fs-usage").text
    assert "used" in usage, usage
    shot(browser, cluster, "files.png")
    find(browser, "#from-cloud").click()
    wait_until(lambda: visible(browser, "#import-bucket"), "the import dialog")
    shot(browser, cluster, "files-from-cloud.png")
    find(browser, "#import-form button[type=button]").click()
    gone(browser, "#import-form")


def urlpath(name):
    from urllib.parse import quote

    return quote(name)


# ---- upload from cloud (a local S3 server) ----

POPULATE = """
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
s3.create_bucket(Bucket="dash-bucket")
s3.put_object(Bucket="dash-bucket", Key="data/a.txt", Body=b"from the cloud\\n")
s3.put_object(Bucket="dash-bucket", Key="data/sub/b ü.bin", Body=bytes(range(256)) * 1024)
s3.put_object(Bucket="dash-bucket", Key="elsewhere.txt", Body=b"not under the prefix")
"""


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_upload_from_cloud(browser, cluster, api, tmp_path):
    import subprocess

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "moto.log", "wb")
    server = subprocess.Popen(
        [os.environ["CAIRN_MOTO_SERVER"], "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    try:
        def populated():
            done = subprocess.run(
                [os.environ["CAIRN_IMPORT_PYTHON"], "-c", POPULATE, endpoint], capture_output=True, timeout=60
            )
            return done.returncode == 0

        wait_until(populated, "the local S3 server to take the test objects", 60, 0.5)
        browser.get(cluster.url + "/#/files")
        wait_until(lambda: finds(browser, "#fs-select option[value=default]"), "the default file system")
        find(browser, "#from-cloud").click()
        wait_until(lambda: visible(browser, "#import-bucket"), "the import dialog")
        fields = {
            "#import-endpoint": endpoint,
            "#import-bucket": "dash-bucket",
            "#import-prefix": "data",
            "#import-key-id": "testing",
            "#import-secret": "testing",
        }
        for selector, value in fields.items():
            find(browser, selector).send_keys(value)
        dest = find(browser, "#import-dest")
        dest.clear()
        dest.send_keys("/from-cloud")
        find(browser, "#import-start").click()
        gone(browser, "#import-form")
        wait_until(
            lambda: finds(browser, '#import-list tr[data-state="succeeded"]'), "the import job to succeed", 60
        )
        row(browser, 'tr[data-name="from-cloud"][data-type="dir"]')
        status, body, _ = api.call("GET", "/api/v1/storage/default/from-cloud/a.txt")
        assert (status, body) == (200, b"from the cloud\n")
        status, body, _ = api.call("GET", "/api/v1/storage/default/from-cloud/sub/" + urlpath("b ü.bin"))
        assert (status, body) == (200, bytes(range(256)) * 1024)
        status, _, _ = api.call("HEAD", "/api/v1/storage/default/from-cloud/elsewhere.txt")
        assert status == 404
        jobs = api.json("GET", "/api/v1/cairn/imports")["imports"]
        assert "testing" not in json.dumps(jobs), "a credential came back in a job's status"
        shot(browser, cluster, "files-imported.png")
    finally:
        server.kill()  # the server this test started
        server.wait()
        log.close()


# ---- object storage ----

def test_objects(browser, cluster, api, tmp_path):
    browser.get(cluster.url + "/#/objects")
    wait_until(lambda: find(browser, "#tab-private").get_attribute("aria-selected") == "true", "the private tab")
    report = tmp_path / "report ü.bin"
    report.write_bytes(random_bytes(150 * 1024 + 3, "object"))
    find(browser, "#upload-objects").send_keys(str(report))
    line = row(browser, 'tr[data-key="report ü.bin"]')
    wait_until(lambda: finds(browser, "#object-transfers li.done"), "the finished upload")
    line.find_element(CSS, "button.copy-url").click()
    url = wait_until(lambda: find(browser, "#object-url").get_attribute("value"), "the presigned URL")
    assert "signature=" in url and "expires=" in url, url
    fetched = urlopen_plain(url)
    assert fetched == (200, report.read_bytes()), "the presigned URL did not give the object's bytes"
    tampered = url.replace("signature=", "signature=0")
    assert urlopen_plain(tampered)[0] in (401, 403)
    unsigned = url.split("?")[0]
    assert urlopen_plain(unsigned)[0] in (401, 403)
    shot(browser, cluster, "objects.png")

    find(browser, "#tab-public").click()
    wait_until(lambda: find(browser, "#tab-public").get_attribute("aria-selected") == "true", "the public tab")
    poster = tmp_path / "poster.txt"
    poster.write_bytes(b"public bytes\n")
    find(browser, "#upload-objects").send_keys(str(poster))
    row(browser, 'tr[data-key="poster.txt"]').find_element(CSS, "button.copy-url").click()
    wait_until(lambda: find(browser, "#object-url").get_attribute("value") != url, "the public URL")
    public_url = find(browser, "#object-url").get_attribute("value")
    assert "signature=" not in public_url
    assert urlopen_plain(public_url) == (200, b"public bytes\n")

    find(browser, "#tab-private").click()
    row(browser, 'tr[data-key="report ü.bin"]').find_element(CSS, "button.danger").click()
    confirm(browser)
    gone(browser, 'tr[data-key="report ü.bin"]')
    assert urlopen_plain(url)[0] == 404


def urlopen_plain(url):
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# ---- key-value ----

def test_kv(browser, cluster, api):
    browser.get(cluster.url + "/#/kv")
    field = wait_until(lambda: visible(browser, "#ns-name"), "the namespace form")
    field.send_keys("dash-ns", Keys.ENTER)
    row(browser, 'li[data-namespace="dash-ns"]')
    wait_until(lambda: visible(browser, "#new-key"), "the key form")

    find(browser, "#new-key").send_keys("greeting")
    find(browser, "#new-value").send_keys("hello")
    find(browser, "#new-ttl").send_keys("3600")
    find(browser, "#key-new button[type=submit]").click()
    wait_until(lambda: find(browser, "#viewed-key").text == "greeting", "the key view")
    meta = wait_until(lambda: find(browser, "#value-meta").text, "the value's details")
    assert "expires in" in meta, meta
    status, body, headers = api.call("GET", "/api/v1/kv/namespaces/dash-ns/values/greeting")
    assert (status, body) == (200, b"hello")
    assert int(headers["x-cairn-expires-at-ms"]) > time.time() * 1000 + 3000 * 1000

    find(browser, "button.view-mode[data-mode=hex]").click()
    assert "68 65 6c 6c 6f" in find(browser, "#value-shown").text

    editor = find(browser, "#value-edit")
    editor.clear()
    editor.send_keys("hello, edited")
    find(browser, "#edit-ttl").clear()
    find(browser, "#key-edit button[type=submit]").click()
    wait_until(lambda: "no TTL" in find(browser, "#value-meta").text, "the edited value without a TTL")
    status, body, headers = api.call("GET", "/api/v1/kv/namespaces/dash-ns/values/greeting")
    assert (status, body) == (200, b"hello, edited")
    assert headers["x-cairn-expires-at-ms"] == "0"

    # Paging and prefix search over keys written through the API.
    for i in range(60):
        body, headers = multipart("value", f"v{i}".encode())
        status, data, _ = api.call("POST", f"/api/v1/kv/namespaces/dash-ns/values/k-{i:02}", body, headers=headers)
        assert status == 200, data
    search = find(browser, "#key-prefix")
    search.send_keys("k-", Keys.ENTER)
    wait_until(lambda: len(finds(browser, "#key-list li[data-key]")) == 50, "a first page of 50 keys")
    assert finds(browser, "#key-list li[data-key]")[0].get_attribute("data-key") == "k-00"
    find(browser, "#keys-next").click()
    wait_until(lambda: len(finds(browser, "#key-list li[data-key]")) == 10, "a second page of 10 keys")
    assert finds(browser, "#key-list li[data-key]")[-1].get_attribute("data-key") == "k-59"
    assert find(browser, "#keys-next").get_attribute("disabled") is not None
    find(browser, "#keys-prev").click()
    wait_until(lambda: len(finds(browser, "#key-list li[data-key]")) == 50, "the first page again")
    search.clear()
    search.send_keys("gr", Keys.ENTER)
    wait_until(
        lambda: [li.get_attribute("data-key") for li in finds(browser, "#key-list li[data-key]")] == ["greeting"],
        "only the key with prefix gr",
    )
    row(browser, 'li[data-key="greeting"] button').click()
    wait_until(lambda: find(browser, "#viewed-key").text == "greeting", "the key view")
    shot(browser, cluster, "kv.png")

    find(browser, "#key-delete").click()
    confirm(browser)
    gone(browser, 'li[data-key="greeting"]')
    status, _, _ = api.call("GET", "/api/v1/kv/namespaces/dash-ns/values/greeting")
    assert status == 404


# ---- queues ----

def test_queues(browser, cluster, api):
    browser.get(cluster.url + "/#/queues")
    field = wait_until(lambda: visible(browser, "#queue-name"), "the queue form")
    field.send_keys("dash-q", Keys.ENTER)
    row(browser, 'tr[data-queue="dash-q"]')
    for message in ("first message", "second ü"):
        box = wait_until(lambda: visible(browser, "#queue-message"), "the send form")
        box.send_keys(message)
        find(browser, "#queue-send button[type=submit]").click()
        wait_until(lambda: box.get_attribute("value") == "", "the sent message to clear")
    wait_until(lambda: find(browser, 'tr[data-queue="dash-q"] .length').text == "2", "length 2")
    wait_until(lambda: len(finds(browser, "#queue-peeked li[data-seq]")) == 2, "two peeked messages")
    assert api.json("GET", "/api/v1/queue/dash-q/length")["length"] == 2, "a peek took a message"

    find(browser, "#queue-receive").click()
    wait_until(lambda: find(browser, "#queue-received").text == "first message", "the received message")
    wait_until(lambda: find(browser, 'tr[data-queue="dash-q"] .length').text == "1", "length 1")
    assert api.json("GET", "/api/v1/queue/dash-q/length")["length"] == 1
    shot(browser, cluster, "queues.png")

    field = find(browser, "#queue-name")
    field.send_keys("doomed-q", Keys.ENTER)
    row(browser, 'tr[data-queue="doomed-q"] button.danger').click()
    confirm(browser)
    gone(browser, 'tr[data-queue="doomed-q"]')
    names = [q["name"] for q in api.json("GET", "/api/v1/queue")]
    assert "doomed-q" not in names and "dash-q" in names


# ---- cluster (last: it kills the leader) ----

def leader_on_page(browser):
    rows = finds(browser, "#member-rows tr")
    leaders = [r.get_attribute("data-node") for r in rows if r.get_attribute("data-role") == "leader"]
    summary = find(browser, "#cluster-summary").get_attribute("data-leader")
    if len(leaders) == 1 and summary == leaders[0]:
        return int(leaders[0])
    return None


def test_cluster_and_failover(browser, cluster):
    browser.get(cluster.url + "/#/cluster")
    wait_until(
        lambda: len(finds(browser, '#member-rows tr[data-health="ok"]')) == 3 and leader_on_page(browser),
        "three healthy members and one leader",
    )
    old = leader_on_page(browser)
    roles = sorted(r.get_attribute("data-role") for r in finds(browser, "#member-rows tr"))
    assert roles == ["follower", "follower", "leader"], roles
    shot(browser, cluster, "cluster.png")

    victim = next(n for n in cluster.nodes if n.id == old)
    if victim.id == cluster.serving:
        # The page's own node is about to die: watch from another one.
        other = next(n for n in cluster.nodes if n.id != victim.id)
        os.kill(victim.pid, signal.SIGKILL)
        sign_in(browser, f"http://{other.http}", cluster.token)
        wait_until(lambda: visible(browser, "#nav"), "the navigation on another node")
        browser.get(f"http://{other.http}/#/cluster")
    else:
        os.kill(victim.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    new = wait_until(
        lambda: (lambda leader: leader if leader not in (None, old) else None)(leader_on_page(browser)),
        "a new leader on the page",
        NEW_LEADER_WAIT_S,
    )
    print(f"leader {old} killed; the page showed leader {new} after {time.monotonic() - killed_at:.1f} s")
    wait_until(
        lambda: find(browser, f'#member-rows tr[data-node="{old}"]').get_attribute("data-health") == "unreachable",
        "the killed node shown unreachable",
    )
    shot(browser, cluster, "cluster-failover.png")
