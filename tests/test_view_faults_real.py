"""Issue 28: what a user looks at after faults run by hand on a real testnet shows every fault and penalty.

One `posnet testnet up` (4 validators, mosquitto, the fault relay); by hand,
as a user types them: v1+v2 | v3+v4 partitioned and healed, v3 killed until
the chain jails it, v2 paused and resumed. Then the page `posnet view DIR`
serves, in headless Chromium, must list the three faults, the heal and the
jailing on its timeline, draw the killed v3 as down (not in a step's
colour), say live while `up` runs, and stop saying so after `testnet down`;
and `posnet testnet report` must list the same faults.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from network.transport.broker import free_port, mosquitto_available
from network.view.server import ViewServer
from network.view.source import TestnetSource
from tests.support.user_testnet import running_testnet
from tests.test_view import browser_paths, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.broker,
    pytest.mark.integration,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed"),
]
NAMES = ("v1", "v2", "v3", "v4")


def incidents(browser: Any) -> list[dict[str, str]]:
    """The page's timeline items (the list drawn beside the canvas, from the same array)."""
    from selenium.webdriver.common.by import By

    return [
        {
            "kind": li.get_attribute("data-kind"),
            "node": li.get_attribute("data-node") or "",
            "end": li.get_attribute("data-end"),
            "text": li.get_attribute("textContent"),
        }
        for li in browser.find_elements(By.CSS_SELECTOR, "#incidents li")
    ]


def test_faults_run_by_hand_and_the_jailing_show_in_the_view_and_the_report(tmp_path: Path) -> None:
    chromium, driver_path = browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    directory = tmp_path / "net"
    up = ["--validators", "4", "--slot-ms", "200", "--quiet", "--broker", "mosquitto", "--duration", "600"]
    with running_testnet(tmp_path, directory, NAMES, up, wait_s=90) as net:

        def jailed(validator: str) -> bool:
            return any(e.get("validator") == validator for e in net.events("v1", "jailed"))

        net.wait_for(lambda: net.height("v1") >= 3, "the chain finalizes")
        net.posnet("testnet", "partition", "v1,v2", "v3,v4", "--dir", directory)
        time.sleep(2.0)
        net.posnet("testnet", "heal", "--dir", directory)
        healed_at = net.height("v1")
        net.wait_for(lambda: net.height("v1") >= healed_at + 2, "finality resumes after the heal")
        net.posnet("testnet", "kill", "v3", "--dir", directory)
        net.wait_for(lambda: jailed("v3"), "v3 jailed for downtime")
        net.posnet("testnet", "pause", "v2", "--dir", directory)
        time.sleep(2.0)
        net.posnet("testnet", "resume", "v2", "--dir", directory)
        resumed_at = net.height("v1")
        net.wait_for(lambda: net.height("v1") > resumed_at, "finality resumes after the resume")

        server = ViewServer(("127.0.0.1", free_port()), TestnetSource(directory))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
            options.add_argument(argument)
        browser = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
        try:
            browser.get(server.url)
            wait_for(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
            items = wait_for(lambda: incidents(browser) or None)
            kinds = [(i["kind"], i["node"]) for i in items]
            assert ("partition", "") in kinds and ("heal", "") in kinds, items
            assert ("down", "v3") in kinds and ("paused", "v2") in kinds, items
            assert ("jailed", "v3") in kinds, items
            partition = next(i for i in items if i["kind"] == "partition")
            assert partition["end"] and "v1,v2 | v3,v4" in partition["text"]
            assert next(i for i in items if i["kind"] == "paused")["end"]  # resumed: the window closed
            assert next(i for i in items if i["kind"] == "down")["end"] == ""  # v3 is still down
            # at the live end v3 is drawn down (it logged nothing when killed), the others in a step's colour
            v3 = browser.find_element(By.CSS_SELECTOR, 'g.node[data-node="v3"]')
            assert "down" in (v3.get_attribute("class") or "")
            assert "down" in browser.find_element(By.CSS_SELECTOR, 'g.node[data-node="v3"] .info').text
            v1 = browser.find_element(By.CSS_SELECTOR, 'g.node[data-node="v1"]')
            assert "down" not in (v1.get_attribute("class") or "")
            fill = browser.execute_script
            css = "return getComputedStyle(document.querySelector('g.node[data-node=\"%s\"] .body')).fill"
            assert fill(css % "v3") != fill(css % "v1")
            assert browser.find_element(By.ID, "live-badge").is_displayed()
            net.posnet("testnet", "down", "--dir", directory)
            wait_for(lambda: not browser.find_element(By.ID, "live-badge").is_displayed(), timeout=15)
            assert browser.find_element(By.ID, "stopped-badge").is_displayed()
            # the nodes' last `stopped` lines end the run; they are no outage to list (v3's kill still is)
            downs = [(i["node"], i["end"]) for i in incidents(browser) if i["kind"] == "down"]
            assert downs == [("v3", "")], downs
        finally:
            browser.quit()
            server.shutdown()
            server.server_close()
    report = net.posnet("testnet", "report", "--dir", directory, "--out", tmp_path / "report.png", check=None)
    assert "v3 killed" in report.stdout and "v2 paused" in report.stdout, report.stdout
    assert "partition v1,v2 | v3,v4" in report.stdout and "jailed v3" in report.stdout, report.stdout
