"""A real browser against a real server: Debian's chromium driven by selenium through
``/usr/bin/chromedriver`` (Selenium Manager is never asked to download anything), and the
app served by uvicorn on a free loopback port in a thread of the test, over the ``web``
harness of each database. axe-core (vendored) is injected into every page visited; a
failing test leaves a screenshot under ``var/test-screenshots/``."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tests.conftest import IN_CI
from tests.web.conftest import WebHarness

ROOT = Path(__file__).resolve().parents[3]
AXE = Path(__file__).resolve().parents[1] / "vendor" / "axe.min.js"
SCREENSHOTS = ROOT / "var" / "test-screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1000")
#: axe impacts that fail a page
BLOCKING = ("serious", "critical")


def _require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        reason = f"browser tests need {', '.join(missing)} (apt: chromium chromium-driver)"
        if IN_CI:
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 in a thread; stopped by :meth:`stop`."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live(web: WebHarness) -> Iterator[LiveServer]:
    _require_browser()
    server = LiveServer(web.app).start()
    yield server
    server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome: Any = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def browser(request: pytest.FixtureRequest, tmp_path: Path, live: LiveServer
            ) -> Iterator[Browser]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(60)
    b = Browser(driver, live.url)
    try:
        yield b
    finally:
        call = getattr(request.node, "rep_call", None)
        if call is not None and call.failed:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            name = "".join(c if c.isalnum() or c in "-_." else "_" for c in request.node.name)
            driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
            (SCREENSHOTS / f"{name}.html").write_text(driver.page_source, encoding="utf-8")
        driver.quit()


class Browser:
    """A thin helper over the driver: visit a path, check it with axe, fill forms."""

    def __init__(self, driver: Any, base: str) -> None:
        self.driver = driver
        self.base = base
        self.checked: list[str] = []

    def get(self, path: str) -> None:
        self.driver.get(self.base + path)
        self.axe()

    @property
    def path(self) -> str:
        url: str = self.driver.current_url
        return url[len(self.base):]

    @property
    def text(self) -> str:
        body: str = self.driver.find_element("tag name", "body").text
        return body

    def axe(self) -> None:
        """Zero serious or critical accessibility violations on the current page."""
        self.driver.execute_script(AXE.read_text(encoding="utf-8"))
        violations = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']})"
            ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact,"
            " help: v.help, nodes: v.nodes.map(n => n.target.join(' '))}))))"
            ".catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e),"
            " nodes: []}]));")
        bad = [v for v in violations if v["impact"] in BLOCKING]
        assert not bad, f"{self.path}: " + "; ".join(
            f"{v['id']} ({v['impact']}): {v['help']} at {v['nodes'][:3]}" for v in bad)
        self.checked.append(self.path)

    def fill(self, values: dict[str, str]) -> None:
        """Set form fields by name (inputs, selects, textareas) as a user would."""
        from selenium.webdriver.support.ui import Select

        for name, value in values.items():
            el = self.driver.find_element("name", name)
            if el.tag_name == "select":
                Select(el).select_by_value(value)
            elif el.get_attribute("type") in ("date", "datetime-local"):
                # typing into these depends on the browser's locale: set the value itself
                self.driver.execute_script("arguments[0].value = arguments[1];", el, value)
            elif el.get_attribute("type") == "checkbox":
                if el.is_selected() != (value == "yes"):
                    el.click()
            else:
                el.clear()
                el.send_keys(value)

    def submit(self, button_text: str) -> None:
        """Click the submit button labelled ``button_text`` and check the next page."""
        buttons = [b for b in self.driver.find_elements("css selector", "button")
                   if b.text.strip().startswith(button_text)]
        assert buttons, f"no button {button_text!r} on {self.path}"
        buttons[0].click()
        self.axe()

    def login(self, username: str, password: str) -> None:
        self.get("/login")
        self.fill({"username": username, "password": password})
        self.submit("Log in")

    def logout(self) -> None:
        self.submit("Log out")

    def click_link(self, text: str) -> None:
        self.driver.find_element("partial link text", text).click()
        self.axe()
