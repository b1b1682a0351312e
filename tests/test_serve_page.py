"""The web page in headless Chromium (Debian's chromium + chromedriver, driven by Selenium):
choose or drop a scan, see label, probabilities, speed and the overlay, checked on a screenshot."""
from __future__ import annotations

import base64
import json
import shutil
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from mr_series import HGG_VOLUME
from conftest import EXAMPLES, EXAMPLE_SCAN

#: The flags a headless Chromium needs here: no sandbox (root), no GPU, nothing fetched from outside.
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,1000", "--force-device-scale-factor=1")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.skip("chromium and chromedriver not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager (which would download drivers) is never consulted.
    service = webdriver.ChromeService(executable_path=chromedriver)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _open(driver, server) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(server.http_url + "/")
    WebDriverWait(driver, 30).until(lambda d: "gp-unet" in d.find_element("id", "model").text)


def _wait_done(driver, state: str = "done") -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 120).until(lambda d: d.find_element("tag name", "body").get_attribute("data-state") in ("done", "error"))
    assert driver.find_element("tag name", "body").get_attribute("data-state") == state, driver.find_element("id", "status").text


def _api(server, path: Path) -> dict:
    request = urllib.request.Request(f"{server.http_url}/predict?overlay=png&name={path.name}",
                                     data=path.read_bytes(), method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def _screenshot_region(driver, element_id: str, path: Path) -> np.ndarray:
    """Save a screenshot of the page and return the RGB pixels of one element from it."""
    driver.save_screenshot(str(path))
    shot = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    rect = driver.execute_script(
        "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
        "return [Math.round(r.left), Math.round(r.top), Math.round(r.width), Math.round(r.height)];", element_id)
    x, y, w, h = rect
    assert w > 20 and h > 20 and y + h <= shot.shape[0], f"{element_id} not in view: {rect}, screenshot {shot.shape}"
    return shot[y : y + h, x : x + w]


def test_choose_a_scan_and_see_the_result(browser, http_server, tmp_path: Path) -> None:
    _open(browser, http_server)
    browser.find_element("id", "file").send_keys(str(EXAMPLE_SCAN))
    _wait_done(browser)
    expected = _api(http_server, EXAMPLE_SCAN)
    (result,) = expected["results"]
    assert browser.find_element("id", "label").text == result["label"]
    rows = [[td.text for td in tr.find_elements("tag name", "td")]
            for tr in browser.find_elements("css selector", "#probabilities tr")]
    assert [[name, p] for name, _, p in rows] == [[name, f"{p:.3f}"] for name, p in result["probabilities"].items()]
    stages = [tr.find_element("tag name", "td").text.split(" ")[0] for tr in browser.find_elements("css selector", "#speed tr")]
    assert {"load", "preprocess", "inference", "postprocess", "server", "round"} <= set(stages)
    assert f"{result['mask_area_px']} px" in browser.find_element("id", "mask").text

    # what a person sees: the overlay on the screenshot is the API's overlay (heatmap + cyan mask outline)
    shown = _screenshot_region(browser, "overlay", tmp_path / "page.png")
    api_overlay = cv2.cvtColor(cv2.imdecode(np.frombuffer(base64.b64decode(expected["overlay_png"]), np.uint8),
                                            cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    reference = cv2.resize(api_overlay, (shown.shape[1], shown.shape[0]), interpolation=cv2.INTER_AREA)
    assert np.abs(shown.astype(int) - reference.astype(int)).mean() < 12
    cyan = (shown[..., 0] < 80) & (shown[..., 1] > 200) & (shown[..., 2] > 200)
    warm = (shown[..., 0] > 180) & (shown[..., 2] < 120)  # inferno's orange/yellow: the heatmap
    assert cyan.sum() > 200 and warm.sum() > 500
    facts = _screenshot_region(browser, "label", tmp_path / "page.png")
    assert facts.std() > 20  # the label is drawn, not a blank box


def test_drop_a_volume(browser, http_server, tmp_path: Path) -> None:
    _open(browser, http_server)
    data = base64.b64encode(HGG_VOLUME.read_bytes()).decode()
    browser.execute_script(
        """
        const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], arguments[1]));
        const drop = document.getElementById("drop");
        for (const type of ["dragenter", "dragover", "drop"]) {
          drop.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }
        """,
        data, "hgg_flair.nii.gz",
    )
    _wait_done(browser)
    expected = _api(http_server, HGG_VOLUME)
    key = next(r for r in expected["results"] if r["slice"] == expected["key_slice"])
    assert browser.find_element("id", "label").text == key["label"]
    caption = browser.find_element("id", "caption").text
    assert caption == f"hgg_flair.nii.gz: slice {expected['key_slice']} of {len(expected['results'])} (largest mask)"
    shown = _screenshot_region(browser, "overlay", tmp_path / "volume.png")
    assert shown.std() > 20


def test_a_bad_file_shows_the_error(browser, http_server, tmp_path: Path) -> None:
    _open(browser, http_server)
    bad = tmp_path / "notes.txt"
    bad.write_text("not a scan at all " * 20)
    browser.find_element("id", "file").send_keys(str(bad))
    _wait_done(browser, "error")
    status = browser.find_element("id", "status").text
    assert status.startswith("notes.txt: the body is not a recognised scan") and "HTTP 415" in status
    assert not browser.find_element("id", "result").is_displayed()


FOUR_CONTRASTS = ("t1", "t2", "t1ce", "flair")


@pytest.mark.slow
def test_a_four_contrast_model_takes_the_files_of_one_scan(browser, four_contrast_server) -> None:
    import gpedge

    files = {c: EXAMPLES / f"lgg_heldout_{c}.png" for c in FOUR_CONTRASTS}
    _open(browser, four_contrast_server)
    assert "t1, t2, t1ce, flair" in browser.find_element("id", "hint").text
    browser.find_element("id", "file").send_keys("\n".join(str(files[c]) for c in reversed(FOUR_CONTRASTS)))
    _wait_done(browser)
    with gpedge.Predictor("gp-unet-synth", backend="onnxruntime") as predictor:
        (expected,) = predictor.predict(files)
    assert browser.find_element("id", "label").text == expected.label
    rows = [[td.text for td in tr.find_elements("tag name", "td")]
            for tr in browser.find_elements("css selector", "#probabilities tr")]
    assert [[name, p] for name, _, p in rows] == [[name, f"{p:.3f}"] for name, p in expected.probabilities.items()]

    _open(browser, four_contrast_server)
    browser.find_element("id", "file").send_keys("\n".join(str(files[c]) for c in ("t1", "t1ce")))
    _wait_done(browser, "error")
    assert browser.find_element("id", "status").text.startswith("no file for t2, flair")
