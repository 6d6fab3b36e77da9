"""OHIF v3 (served by MONAI Label at /ohif/) in headless Chromium against a real Orthanc.

Debian's ``/usr/bin/chromium`` driven by Playwright for Python (no browser download): the
study list shows the uploaded phantom, the MONAI Label mode opens it, the panel lists our
models and strategies, and *Run* of ``muscle`` draws the muscle overlay. Screenshots go to
``test-artifacts/ohif/`` (git-ignored). Saving a corrected label and training are not
clicked here: the panel sends the same REST calls that ``test_orthanc.py`` makes.
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest
import requests
from PIL import Image

from tests.conftest import ROOT, Server
from tests.viewers.test_orthanc import Orthanc, USER, upload_phantom

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# offline: no background look-ups; every name but loopback fails at once instead of hanging
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-default-apps", "--disable-sync", "--no-first-run",
                 "--metrics-recording-only", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
ARTIFACTS = ROOT / "test-artifacts" / "ohif"


@pytest.fixture(scope="module")
def ohif_server(tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    base = tmp_path_factory.mktemp("ohif")
    if Orthanc.install_error():
        pytest.skip(f"Orthanc cannot be installed here: {Orthanc.install_error()}")
    pacs = Orthanc(base)
    try:
        phantom, _ = upload_phantom(pacs, base / "phantoms")
        saved = dict(os.environ)
        os.environ.update({"MONAI_LABEL_DICOMWEB_USERNAME": USER, "MONAI_LABEL_DICOMWEB_PASSWORD": pacs.password,
                           "MONAI_LABEL_DICOMWEB_CACHE_PATH": str(base / "cache")})
        try:
            server = Server(pacs.url, base / "server.log")
        finally:
            os.environ.clear()
            os.environ.update(saved)
        with server:
            yield server
    finally:
        pacs.stop()


def coloured_fraction(path, box) -> float:
    """Share of pixels in ``box`` (left, top, right, bottom) that are not grey: the overlay."""
    rgb = np.asarray(Image.open(path).convert("RGB").crop(box), dtype=np.int16)
    return float(np.mean(rgb.max(axis=2) - rgb.min(axis=2) > 40))


def test_ohif_lists_the_study_and_runs_muscle_segmentation(ohif_server):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url = ohif_server.url
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        # the panel talks to <host>:8000 unless told otherwise by this cookie
        context.add_cookies([{"name": "MONAILABEL_SERVER_URL", "value": url + "/", "url": url}])
        page = context.new_page()
        try:
            page.goto(url + "/ohif/", wait_until="domcontentloaded")
            page.wait_for_selector("text=phantom_leg_20011", timeout=120_000)  # via MONAI Label's DICOMweb proxy
            page.screenshot(path=ARTIFACTS / "1_study_list.png")
            page.click("text=phantom_leg_20011")
            if page.locator("button:has-text('Confirm and Hide')").count():
                page.click("button:has-text('Confirm and Hide')")
            page.click("button:has-text('MONAI Label')")
            page.wait_for_selector("text=Server:", timeout=120_000)
            page.wait_for_selector(".cornerstone-canvas, canvas", timeout=120_000)
            time.sleep(5)  # the volume finishes loading into the viewports
            page.locator(f"input[value*='{ohif_server.port}']").locator("xpath=following::button[1]").click()
            page.wait_for_selector("text=Auto-Segmentation", timeout=60_000)
            model = page.locator("text=Auto-Segmentation").locator("xpath=following::select[1]")
            model.wait_for(timeout=30_000)
            assert model.input_value() == "muscle"
            assert "uncertain_slices" in page.inner_text("body")
            page.screenshot(path=ARTIFACTS / "2_viewer.png")
            viewport = (300, 380, 550, 560)  # the axial viewport's image (1400 x 900 window)
            before = coloured_fraction(ARTIFACTS / "2_viewer.png", viewport)

            page.locator("text=Auto-Segmentation").locator("xpath=following::button[normalize-space()='Run'][1]").click()
            deadline = time.time() + 180
            after = before
            while time.time() < deadline and after < before + 0.05:
                time.sleep(3)
                page.screenshot(path=ARTIFACTS / "3_segmented.png")
                after = coloured_fraction(ARTIFACTS / "3_segmented.png", viewport)
            page.wait_for_selector("text=Running Segmentation - Successful", timeout=60_000)  # OHIF's toast
        finally:
            page.screenshot(path=ARTIFACTS / "last.png")
            browser.close()
    assert "'model': 'muscle'" in ohif_server.log_path.read_text()  # the panel's infer request reached us
    assert before < 0.01 and after > before + 0.05, (before, after)  # the muscles are drawn over the image
    assert requests.get(f"{url}/info/", timeout=30).status_code == 200
