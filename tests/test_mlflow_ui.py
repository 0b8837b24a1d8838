"""The MLflow UI, in a real browser, puts the trained models side by side.

`mlflow ui` is started the way `make ui` starts it, on a free 127.0.0.1 port over the session's
store; headless Chromium from the Debian packages (no browser download) opens the experiment,
selects the candidates' runs, opens the compare view and reads the run names and a metric off
the page. The screenshot lands in tests/artifacts/ for a human to look at.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import Pipeline

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT = Path(__file__).resolve().parent / "artifacts" / "mlflow-compare.png"
METRIC = "test_average_precision"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1920,1200",
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_healthy(url: str, server: subprocess.Popen[bytes], log: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow ui exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"mlflow ui did not answer on {url} within {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def mlflow_ui(fraud_pipeline: Pipeline, tmp_path: Path) -> Iterator[str]:
    """`mlflow ui` over the session's store, as `make ui` runs it; stopped with its workers."""
    port = _free_port()
    log = tmp_path / "mlflow-ui.log"
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "ui",
        "--backend-store-uri",
        fraud_pipeline.tracking_uri,
        "--default-artifact-root",
        str(fraud_pipeline.artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # background jobs (trace scoring) are a GenAI feature this test does not need; they start
    # extra processes that only slow the server's start
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("wb") as sink:
        server = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, server, log)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        message = "needs Debian's chromium and chromium-driver (make tools installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never fetch a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def as_mlflow_shows(value: float) -> str:
    """A metric as the compare view prints it: 3 decimals below 10, 2 below 100, else 1."""
    digits = 3 if abs(value) < 10 else 2 if abs(value) < 100 else 1
    rounded = math.floor(value * 10**digits + 0.5) / 10**digits
    return str(int(rounded)) if rounded == int(rounded) else repr(rounded)


def test_compare_view_shows_the_candidates_and_their_metrics(
    fraud_pipeline: Pipeline, mlflow_ui: str, browser: WebDriver
) -> None:
    client = MlflowClient(fraud_pipeline.tracking_uri)
    experiment = client.get_experiment_by_name("fraud")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.candidate != ''")
    models = {r.info.run_name: r.data.metrics[METRIC] for r in runs if r.info.run_name != "rule_amount_threshold"}
    assert set(models) == {"logistic_regression", "xgboost"}
    wait = WebDriverWait(browser, 60)

    browser.get(f"{mlflow_ui}/#/experiments")
    # the UI opens on its GenAI pages; classic training runs live under "Model training"
    wait.until(ec.element_to_be_clickable((By.XPATH, "//span[normalize-space()='Model training']"))).click()
    wait.until(ec.element_to_be_clickable((By.LINK_TEXT, "fraud"))).click()
    for name in models:
        link = wait.until(ec.presence_of_element_located((By.LINK_TEXT, name)))
        row = link.find_element(By.XPATH, "./ancestor::div[contains(@class, 'ag-row')][1]")
        row.find_element(By.CSS_SELECTOR, ".ag-selection-checkbox input[type=checkbox]").click()
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "[data-testid=runs-compare-button]"))).click()

    wait.until(
        ec.presence_of_element_located(
            (By.XPATH, f"//*[normalize-space()='Comparing {len(models)} Runs from 1 Experiment']")
        )
    )
    name_row = wait.until(ec.presence_of_element_located((By.XPATH, "//th[normalize-space()='Run Name:']/..")))
    shown_names = [cell.text for cell in name_row.find_elements(By.TAG_NAME, "td")]
    assert sorted(shown_names) == sorted(models)
    wait.until(ec.presence_of_element_located((By.LINK_TEXT, METRIC)))
    shown_values = browser.execute_script(_METRIC_ROW_JS, METRIC)
    assert shown_values == [as_mlflow_shows(models[name]) for name in shown_names]

    _tidy_for_screenshot(browser)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))


# The compare view's metric table is two virtualized grids: names on the left, one value cell
# per run on the right, absolutely positioned; a name's values share its vertical offset and
# sit left to right in the order of the run columns.
_METRIC_ROW_JS = """
const link = [...document.querySelectorAll('a')].find(a => a.textContent.trim() === arguments[0]);
const cell = link.parentElement;
const grids = [...cell.closest('.du-bois-light-collapse-content-box').querySelectorAll('[role=grid]')];
const values = grids.find(g => !g.contains(cell));
return [...values.querySelectorAll('div[style]')]
  .filter(c => c.style.position === 'absolute' && c.style.top === cell.style.top)
  .sort((a, b) => parseFloat(a.style.left) - parseFloat(b.style.left))
  .map(c => c.textContent.trim());
"""


def _tidy_for_screenshot(browser: WebDriver) -> None:
    """Fold the plots and parameters and close the assistant, so run names and metrics fit."""
    for section in ("Visualizations", "Parameters"):
        for header in browser.find_elements(By.CSS_SELECTOR, f"[aria-label='collapse {section}']"):
            header.click()
    for close in browser.find_elements(By.CSS_SELECTOR, "button[aria-label=Close]"):
        if close.is_displayed():
            close.click()
    time.sleep(0.5)  # let the folding animation finish before the picture
