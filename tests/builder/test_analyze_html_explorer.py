"""The layer explorer of `analyze --html` in real headless Chromium (Debian's, driven by Debian's
chromedriver through selenium): the DOM holds the tree, clicking a layer changes the marks, the
filters and the search narrow the tree. A screenshot is kept as an artifact (its path is printed)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.builder.analyze_fixtures import APP_LAYERS
from tests.builder.test_analyze_dive import docker_archive
from tests.conftest import pybuild

CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(CHROMEDRIVER is None or shutil.which("chromium") is None,
                                reason="not installed: chromium, chromium-driver (scripts/install-test-deps)")


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("html-explorer")
    docker_archive(APP_LAYERS, tmp / "app.tar")
    pybuild("analyze", "--html", str(tmp / "app.html"), str(tmp / "app.tar"))
    return tmp / "app.html"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1200,1400", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def tree(driver: Any) -> dict[str, str]:
    """The shown rows: path -> mark ("" for none), in display order."""
    from selenium.webdriver.common.by import By

    return {r.get_attribute("data-path"): r.get_attribute("data-mark")
            for r in driver.find_elements(By.CSS_SELECTOR, "#x-tree .r")}


def test_page_stays_self_contained(page: Path) -> None:
    html = page.read_text()
    assert not re.search(r"""(src|href)\s*=|@import|url\(""", html) and "<script src" not in html
    assert "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert 'id="layer-chart"' in html and 'id="figures"' in html  # the report's figures stay


def test_the_explorer_in_chromium(page: Path, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    browser.get(page.as_uri())
    assert tree(browser) == {"/etc": "A", "/usr": "A"}  # layer 0, closed
    title = browser.find_element(By.ID, "x-title")
    assert title.text == "Layer 0: whole tree (2 rows, 2.1 MB)"
    browser.find_element(By.ID, "x-open").click()
    assert len(tree(browser)) == 8 and set(tree(browser).values()) == {"A"}
    browser.find_element(By.CSS_SELECTOR, '#x-layers tr[data-layer="3"]').click()
    marks = tree(browser)
    assert marks["/app/main.py"] == "M" and marks["/app/static/logo.png"] == "A" and marks["/usr/bin/sh"] == "M"
    assert marks["/var/cache/apt.bin"] == "D" and marks["/usr/lib/libc.so"] == "" and marks["/app/util.py"] == ""
    assert "/app/config.json" not in marks  # layer 4's
    row = browser.find_element(By.CSS_SELECTOR, '#x-tree .r[data-path="/app"]')
    assert row.find_element(By.CLASS_NAME, "s").text == "36.6 kB"
    util = browser.find_element(By.CSS_SELECTOR, '#x-tree .r[data-path="/app/util.py"]')
    assert util.find_element(By.CLASS_NAME, "w").text == "W"  # layer 4 removes it
    Select(browser.find_element(By.ID, "x-filter")).select_by_value("layer")
    assert tree(browser) == {"/app": "", "/app/main.py": "M", "/app/static": "A", "/app/static/logo.png": "A",
                             "/usr": "", "/usr/bin": "", "/usr/bin/sh": "M", "/var": "", "/var/cache": "",
                             "/var/cache/apt.bin": "D"}
    Select(browser.find_element(By.ID, "x-filter")).select_by_value("cumulative")
    marks = tree(browser)
    assert marks["/usr/lib/libcrypto.so"] == "A" and marks["/etc/hosts"] == "M" and "/var/cache/apt.bin" not in marks
    Select(browser.find_element(By.ID, "x-filter")).select_by_value("all")
    browser.find_element(By.ID, "x-search").send_keys("logo")
    assert tree(browser) == {"/app": "", "/app/static": "A", "/app/static/logo.png": "A"}
    browser.find_element(By.CSS_SELECTOR, '#x-tree .r[data-path="/app/static/logo.png"]').click()
    assert browser.find_element(By.ID, "x-details").get_attribute("textContent") == (
        "/app/static/logo.png  file  mode 644  owner 0:0  30000 bytes  layers 3A")
    shot = tmp_path / "explorer.png"
    browser.find_element(By.ID, "x-search").send_keys(*[Keys.BACK_SPACE] * 4)
    assert len(tree(browser)) == 18  # no search: layer 3, every directory open as before
    browser.find_element(By.CSS_SELECTOR, '#x-layers tr[data-layer="3"]').click()
    browser.execute_script("document.getElementById('explorer').scrollIntoView()")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    print(f"screenshot of the explorer: {shot}")
