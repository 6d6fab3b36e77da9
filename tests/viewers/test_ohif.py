"""OHIF v3 (served by MONAI Label at /ohif/) in headless Chromium against a real Orthanc.

Debian's ``/usr/bin/chromium`` driven by Playwright for Python (no browser download): the
study list shows the uploaded phantom, the MONAI Label mode opens it, the panel lists our
models and strategies, *Run* of ``muscle`` draws the muscle overlay, *Update Model* starts a
training round, and after a label was saved (a DICOM SEG in the study) the view and *Run*
still work. Screenshots go to ``test-artifacts/ohif/`` (git-ignored). This OHIF build has no
*Save Label* button in the panel; the save is the REST call Slicer's sequence makes too.
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


def open_in_monai_label(page, url, port):
    """Study list -> the phantom's study in the MONAI Label mode -> panel refreshed."""
    page.goto(url + "/ohif/", wait_until="domcontentloaded")
    page.wait_for_selector("text=phantom_leg_20011", timeout=120_000)  # via MONAI Label's DICOMweb proxy
    page.click("text=phantom_leg_20011")
    if page.locator("button:has-text('Confirm and Hide')").count():
        page.click("button:has-text('Confirm and Hide')")
    page.click("button:has-text('MONAI Label')")
    page.wait_for_selector("text=Server:", timeout=120_000)
    page.wait_for_selector("canvas", timeout=120_000)
    time.sleep(5)  # the volume finishes loading into the viewports
    page.locator(f"input[value*='{port}']").locator("xpath=following::button[1]").click()
    page.wait_for_selector("text=Auto-Segmentation", timeout=60_000)


def run_muscle(page, shot):
    """Press Run under Auto-Segmentation; (coloured share before, after) in the axial viewport."""
    viewport = (300, 380, 550, 560)  # the axial viewport's image (1400 x 900 window)
    page.screenshot(path=shot.with_name(shot.stem + "_before.png"))
    before = coloured_fraction(shot.with_name(shot.stem + "_before.png"), viewport)
    page.locator("text=Auto-Segmentation").locator("xpath=following::button[normalize-space()='Run'][1]").click()
    page.wait_for_selector("text=Running Segmentation - Successful", timeout=180_000)  # OHIF's toast
    time.sleep(2)
    page.screenshot(path=shot)
    return before, coloured_fraction(shot, viewport)


def test_ohif_runs_muscle_with_and_without_a_seg_in_the_study_and_starts_training(ohif_server, tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url, errors = ohif_server.url, []
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        # the panel talks to <host>:8000 unless told otherwise by this cookie
        context.add_cookies([{"name": "MONAILABEL_SERVER_URL", "value": url + "/", "url": url}])
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            open_in_monai_label(page, url, ohif_server.port)
            page.screenshot(path=ARTIFACTS / "1_viewer.png")
            model = page.locator("text=Auto-Segmentation").locator("xpath=following::select[1]")
            assert model.input_value() == "muscle"
            before, after = run_muscle(page, ARTIFACTS / "2_segmented.png")
            assert before < 0.01 and after > before + 0.05, (before, after)  # the muscles are drawn

            # Active Learning: our strategies are offered; Update Model starts a training round
            page.click("text=Active Learning")
            strategy = page.locator("text=Strategy:").locator("xpath=following::select[1]")
            assert "uncertain_slices" in strategy.inner_text()
            page.click("button:has-text('Update Model')")
            deadline = time.time() + 60
            while not requests.get(f"{url}/train/", params={"all": True}, timeout=30).json():
                assert time.time() < deadline, "Update Model started no training task"
                time.sleep(1)

            # a DICOM SEG in the study (a saved label) must not break the MONAI Label view
            series = requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"]
            image_id = next(iter(series))
            r = requests.post(f"{url}/infer/muscle", params={"image": image_id}, timeout=300)
            from tests.server.test_infer_api import multipart

            (tmp_path / "label.nii.gz").write_bytes(multipart(r)["image"])
            with open(tmp_path / "label.nii.gz", "rb") as f:
                saved = requests.put(f"{url}/datastore/label", params={"image": image_id, "tag": "final"},
                                     files={"label": ("label.nii.gz", f)}, timeout=300)
            assert saved.status_code == 200, saved.text
            open_in_monai_label(page, url, ohif_server.port)
            assert page.locator("text=SEG").count() > 0  # the study now holds the saved SEG
            page.screenshot(path=ARTIFACTS / "3_with_seg.png")
            run_muscle(page, ARTIFACTS / "4_segmented_with_seg.png")
        finally:
            page.screenshot(path=ARTIFACTS / "last.png")
            browser.close()
    assert not errors, errors  # no script error in the viewer, with or without the SEG
    log = ohif_server.log_path.read_text()
    assert log.count("Infer Request: {'model': 'muscle'") >= 2  # both of the panel's Run reached us
    assert "Train request: {'model': 'muscle'}" in log  # Update Model: one request per trainer, muscle first
