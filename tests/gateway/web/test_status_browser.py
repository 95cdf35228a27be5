"""The status page in a real headless browser (Debian's Chromium driven by Selenium):
log in, filter by state, read a study's triage, model and heatmap, requeue a failed
study, log out. A screenshot of each page is kept (``IHGAMP_TEST_ARTIFACTS`` or the
test's temporary folder; the path is printed)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.catalog import JobState, JobStore
from gateway.web import create_app
from support.operations import dead_letter, failed_study
from support.reports import Reported

from .conftest import OPERATOR, running

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FAILED_UID = "1.2.826.0.1.3680043.10.1234.99"
FAILED_ERROR = "slide decoder: JPEG 2000 tile 17 truncated"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("IHGAMP_TEST_ARTIFACTS") or tmp_path_factory.mktemp("shots"))
    folder = folder / "status-page"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nstatus page screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/bootstrap.sh test)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(reported: Reported) -> Iterator[str]:
    failed_study(reported.catalog, FAILED_UID, "ACC-[/]-<b>7</b>", FAILED_ERROR)
    dead_letter(reported.catalog, FAILED_UID, "pacs", "association rejected by PACS")
    app = create_app(
        reported.catalog, reported.outbox, reported.settings, model=reported.result.model
    )
    with running(app) as url:
        yield url


def _after_click(driver: Any, element_id: str, then: str, by: str = By.ID) -> Any:
    """Click an element (by id) and wait for the next page to show ``then`` (an id)."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(by, element_id).click()
    wait = WebDriverWait(driver, 20)
    wait.until(expected_conditions.staleness_of(old))
    return wait.until(expected_conditions.presence_of_element_located((By.ID, then)))


def _shot(driver: Any, folder: Path, name: str) -> None:
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path)), path
    assert path.stat().st_size > 1000


def test_an_operator_works_from_the_status_page(
    browser: Any, site: str, reported: Reported, artifacts: Path
) -> None:
    # Not logged in: the page sends the browser to the login form.
    browser.get(f"{site}/")
    assert browser.current_url.startswith(f"{site}/login")
    _shot(browser, artifacts, "1-login")
    browser.find_element(By.ID, "token").send_keys(OPERATOR)
    _after_click(browser, "login", "studies")
    assert browser.current_url == f"{site}/", browser.page_source[:3000]
    assert "ihgamp_session" not in browser.execute_script("return document.cookie")  # HttpOnly
    demo = browser.find_element(By.ID, "demo-label")
    assert "DEMO" in demo.text and "not for clinical use" in demo.text
    rows = browser.find_elements(By.CSS_SELECTOR, "#studies tr.study")
    assert {r.get_attribute("data-state") for r in rows} == {"complete", "failed"}
    failed_row = browser.find_element(By.CSS_SELECTOR, "#failed-jobs tr.failed-job")
    assert FAILED_ERROR in failed_row.text
    assert "ACC-[/]-<b>7</b>" in browser.find_element(By.ID, "studies").text  # as text
    _shot(browser, artifacts, "2-status")

    # Filter by state.
    _after_click(browser, "filter-failed", "studies")
    rows = browser.find_elements(By.CSS_SELECTOR, "#studies tr.study")
    assert [r.get_attribute("data-state") for r in rows] == ["failed"]
    _shot(browser, artifacts, "3-filter-failed")
    _after_click(browser, "filter-scored", "studies")
    assert browser.find_elements(By.CSS_SELECTOR, "#studies tr.study") == []
    _after_click(browser, "filter-all", "studies")

    # The scored study: triage text, model, heatmap with its legend, timeline.
    _after_click(browser, reported.study_uid, "analyses", By.LINK_TEXT)
    hrd = browser.find_element(By.CSS_SELECTOR, '#analyses tr.result[data-job="hrd"]')
    triage = hrd.find_element(By.CSS_SELECTOR, "td.triage").text
    assert triage.startswith(reported.report.triage.text)
    assert "DEMO" in hrd.find_element(By.CSS_SELECTOR, "td.call").text
    image = browser.find_element(By.CSS_SELECTOR, "#maps-hrd img")
    assert browser.execute_script("return arguments[0].naturalWidth", image) > 0
    assert browser.find_element(By.CSS_SELECTOR, ".legend").text.startswith("0")
    events = browser.find_element(By.ID, "timeline").text
    assert "first instance received" in events and "complete" in events
    _shot(browser, artifacts, "4-study")

    # The failed study: its error in the timeline, then requeue it.
    browser.get(f"{site}/studies/{FAILED_UID}")
    assert FAILED_ERROR in browser.find_element(By.ID, "timeline").text
    assert "dead-letter" in browser.find_element(By.ID, "deliveries").text
    flash = _after_click(browser, "requeue", "flash")
    assert "queued for scoring again" in flash.text
    assert browser.find_element(By.ID, "state").text == "queued"
    assert JobStore(reported.catalog).jobs(study_uid=FAILED_UID)[0].state == JobState.QUEUED
    assert "pending again" in _after_click(browser, "redispatch", "flash").text
    _shot(browser, artifacts, "5-requeued")

    # Logging out ends the session: the page asks for the token again.
    _after_click(browser, "logout", "token")
    browser.get(f"{site}/")
    assert browser.current_url.startswith(f"{site}/login")
