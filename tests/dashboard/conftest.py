"""Fixtures for the dashboard suite: one headless Chromium for the whole run
(Debian's browser and chromedriver, driven by Selenium), the cluster the Rust
test started (from the environment), and plain HTTP helpers for checking what
the page did through the REST API."""

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

WIDTH, HEIGHT = 1366, 768
PAGE_WAIT_S = 20


@dataclass
class Node:
    id: int
    pid: int
    http: str


@dataclass
class Cluster:
    url: str
    token: str
    nodes: list
    serving: int
    screenshots: str


@pytest.fixture(scope="session")
def cluster():
    nodes = []
    for item in os.environ["CAIRN_NODES"].split(","):
        node_id, pid, http = item.split(":", 2)
        nodes.append(Node(int(node_id), int(pid), http))
    return Cluster(
        url=os.environ["CAIRN_URL"],
        token=os.environ["CAIRN_TOKEN"],
        nodes=nodes,
        serving=int(os.environ["CAIRN_SERVING_NODE"]),
        screenshots=os.environ["CAIRN_SCREENSHOTS"],
    )


@pytest.fixture(scope="session")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="session")
def browser(downloads):
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CAIRN_CHROMIUM", "/usr/bin/chromium")
    for flag in (
        "--headless=new",
        "--no-sandbox",  # the browser runs as root here
        "--disable-dev-shm-usage",
        f"--window-size={WIDTH},{HEIGHT}",
        "--disable-gpu",
        "--no-first-run",
    ):
        options.add_argument(flag)
    service = Service(os.environ.get("CAIRN_CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(PAGE_WAIT_S)
    # The window size alone leaves a shorter viewport: fix the page's size.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
    )
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior",
        {"behavior": "allow", "downloadPath": str(downloads), "eventsEnabled": True},
    )
    yield driver
    driver.quit()


class Api:
    """The REST API with the token, to check what the page did."""

    def __init__(self, cluster):
        self.base = cluster.url
        self.token = cluster.token

    def call(self, method, path, body=None, token=True, headers=None):
        request = urllib.request.Request(self.base + path, data=body, method=method)
        if token:
            request.add_header("Authorization", f"Bearer {self.token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            return error.code, error.read(), error.headers

    def json(self, method, path, body=None):
        status, data, _ = self.call(method, path, body)
        assert status == 200, f"{method} {path}: {status} {data[:300]!r}"
        return json.loads(data)


@pytest.fixture(scope="session")
def api(cluster):
    return Api(cluster)


def wait_until(condition, what, timeout_s=PAGE_WAIT_S, interval_s=0.1):
    """Polls `condition` until it returns something truthy; fails naming `what`."""
    deadline = time.monotonic() + timeout_s
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as error:  # the page may be mid-render
            last_error = error
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last error: {last_error})")
