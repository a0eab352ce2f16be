"""Flower as operators run it: basic auth, workers named by pool, every queue's depth through the
broker API, looked at in a real (headless) Chromium. Screenshots stay in test-artifacts/."""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import conftest as root
from tests.integration.conftest import ROOT

ARTIFACTS = ROOT / "test-artifacts"
AUTH = "ops:s3cret-pass"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1400,900",
]


@pytest.fixture(scope="module")
def flower(workers: object) -> Iterator[str]:
    from app.config import reset_settings
    from app.observability.flower import flower_argv, flower_env
    from app.ops.pools import ProcessSpec
    from app.ops.supervisor import wait_http

    port = root._free_port()
    os.environ.update({"SWITCHBOARD_FLOWER_PORT": str(port), "SWITCHBOARD_FLOWER_BASIC_AUTH": AUTH})
    reset_settings()
    workers.start(ProcessSpec("flower", flower_argv(), flower_env()))  # type: ignore[attr-defined]
    try:
        wait_http(f"http://{AUTH}@127.0.0.1:{port}/healthcheck", 60)
        yield f"127.0.0.1:{port}"
    finally:
        workers.stop("flower")  # type: ignore[attr-defined]
        for name in ("SWITCHBOARD_FLOWER_PORT", "SWITCHBOARD_FLOWER_BASIC_AUTH"):
            os.environ.pop(name, None)
        reset_settings()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Debian chromium through chromedriver, sending Flower's basic-auth header with every
    request (credentials in the URL would not reach the page's own requests)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.fail("chromium and chromedriver are needed: run scripts/browser (scripts/test does)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        token = base64.b64encode(AUTH.encode()).decode()
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd(
            "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}}
        )
        yield driver
    finally:
        driver.quit()


def _open_until(driver: Any, url: str, must_show: list[str], timeout: float = 90) -> str:
    """The page's visible text once it shows everything in `must_show` (Flower learns about
    workers from their heartbeats within seconds of starting)."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while True:
        driver.get(url)
        text = driver.find_element(By.TAG_NAME, "body").text
        if all(item in text for item in must_show) or time.monotonic() > deadline:
            return text
        time.sleep(2)


def test_flower_shows_every_pool_and_queue_in_a_browser(
    flower: str, browser: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    refused = httpx.get(f"http://{flower}/", timeout=10)
    assert refused.status_code == 401  # basic auth is on
    ARTIFACTS.mkdir(exist_ok=True)

    pools = ["router@", "billing@", "technical@"]
    text = _open_until(browser, f"http://{flower}/workers", pools)
    for pool in pools:
        assert pool in text, f"{pool} missing from Flower's workers page:\n{text[:2000]}"
    shot = ARTIFACTS / "flower-workers.png"
    assert browser.save_screenshot(str(shot))
    with capsys.disabled():  # shown even when the test passes quietly
        print(f"\nscreenshot: {shot}")

    # Flower lists the queues workers consume, with their depth from the management API; the DLQs
    # (consumed by nobody) are in `switchboard pools` and the metrics instead.
    queues = ["router", "billing", "technical"]
    text = _open_until(browser, f"http://{flower}/broker", queues)
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()}
    for queue in queues:
        assert queue in rows, f"queue {queue} missing from Flower's broker page:\n{text[:2000]}"
        # Depth columns (messages, unacked, ready, ...) come from the management API: numbers.
        assert rows[queue] and all(cell.isdigit() for cell in rows[queue][:3]), (queue, rows[queue])
    shot = ARTIFACTS / "flower-broker.png"
    assert browser.save_screenshot(str(shot))
    with capsys.disabled():  # shown even when the test passes quietly
        print(f"\nscreenshot: {shot}")
