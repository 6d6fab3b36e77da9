"""Next sample answers from cache, through the real server: no network inside the request, no
wait for scoring; unscored images are offered after scored ones, marked; the random baselines
draw tissue slices only."""

from __future__ import annotations

import time

import pytest
import requests

from lib.data.io import save_nifti
from lib.data.phantoms.phantom import generate_phantom
from lib.inference.uncertainty import MIN_BODY_FRACTION, body_fractions
from tests.conftest import Server

BIG = "a_thigh_big"  # 432 x 432 x 40: scoring it took ~15 s of the request on 2 cores before answers came from cache
LEG = "b_leg"
EMPTY = {BIG: {0, 39}, LEG: {0, 7}}  # outside the field of view: no tissue at all


@pytest.fixture(scope="module")
def quiet_server(tmp_path_factory):
    """A server that queues no scoring by itself (``--conf auto_score_slices false``): nothing is
    scored until a test asks for it."""
    base = tmp_path_factory.mktemp("cache")
    studies = base / "studies"
    studies.mkdir()
    for image_id, region, seed, n in ((BIG, "thigh", 20_031, 40), (LEG, "leg", 20_032, 8)):
        phantom = generate_phantom(region, seed, n_slices=n, severity="mild", spacing=(1.037037, 1.037037, 5.0))
        image = phantom.image.copy()
        image[:, :, sorted(EMPTY[image_id])] = 0
        save_nifti(studies / f"{image_id}.nii.gz", image, phantom.affine)
    with Server(studies, base / "server.log", extra_args=["--conf", "auto_score_slices", "false"]) as srv:
        srv.fractions = {i: body_fractions(str(studies / f"{i}.nii.gz")) for i in EMPTY}
        yield srv


def next_sample(server, strategy="uncertain_slices", **params):
    return requests.post(f"{server.url}/activelearning/{strategy}", json=params, timeout=300)


def image_info(server, image_id):
    return requests.get(f"{server.url}/datastore/image/info", params={"image": image_id}, timeout=30).json()


def test_an_answer_comes_at_once_while_no_image_is_scored_and_says_so(quiet_server):
    srv = quiet_server
    start = time.perf_counter()
    r = next_sample(srv, n=3)
    elapsed = time.perf_counter() - start
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["scored"] is False and answer["stale"] is False and answer["unscored_images"] == 2
    assert answer["id"] == BIG and answer["region"] is None and answer["score"] is None  # no model ran
    assert len(answer["slices"]) == 3 and not set(answer["slices"]) & EMPTY[BIG]
    assert all(srv.fractions[BIG][k] >= MIN_BODY_FRACTION for k in answer["slices"])
    assert image_info(srv, BIG)["suggested_slices"]["scored"] is False  # a viewer plugin sees it too
    assert all("slice_scores" not in image_info(srv, i) for i in EMPTY)  # nothing was scored for the answer
    assert requests.get(f"{srv.url}/scoring/", timeout=30).status_code == 404  # and nothing queued (auto off)
    # generous for a shared CPU; scoring the 40-slice image inside the request alone took ~15 s
    assert elapsed < 5, f"next sample took {elapsed:.1f} s without any scoring"
    assert next_sample(srv, region="leg").json() == {}  # which image is a leg is not known yet


def test_the_scored_image_ranks_first_once_its_scoring_completes(quiet_server):
    srv = quiet_server
    task = srv.run_scoring("slice_uncertainty", {"images": [LEG]}, timeout=600)  # only the leg
    assert task["status"] == "DONE", task
    assert "slice_scores" in image_info(srv, LEG) and "slice_scores" not in image_info(srv, BIG)
    answer = next_sample(srv, n=2).json()
    assert answer["id"] == LEG and answer["scored"] is True and answer["stale"] is False
    assert answer["region"] == "leg" and answer["unscored_images"] == 1 and answer["score"] > 0
    assert not set(answer["slices"]) & EMPTY[LEG]
    assert next_sample(srv, region="leg").json()["id"] == LEG


def test_foreground_random_returns_only_tissue_slices(quiet_server):
    srv = quiet_server
    drawn = set()
    for _ in range(12):
        r = next_sample(srv, "foreground_random", n=3)
        assert r.status_code == 200, r.text
        answer = r.json()
        # MONAI Label merges the image's info into the answer: its "strategy" is that info's record
        assert answer["suggested_slices"]["strategy"] == "foreground_random" and answer["id"] in EMPTY
        fractions = srv.fractions[answer["id"]]
        assert all(fractions[k] >= MIN_BODY_FRACTION for k in answer["slices"]), answer
        assert all(abs(a - b) > 1 for a in answer["slices"] for b in answer["slices"] if a != b)
        drawn |= {(answer["id"], k) for k in answer["slices"]}
    assert len(drawn) > 6  # drawn at random, not one fixed answer
    assert "slice_scores" not in image_info(srv, BIG)  # no model involved
    r = next_sample(srv, "foreground_random", region="leg")
    assert r.status_code == 422 and "region" in r.json()["detail"]


def test_info_says_what_each_strategy_does(quiet_server):
    strategies = requests.get(f"{quiet_server.url}/info/", timeout=30).json()["strategies"]
    assert {"uncertain_slices", "random", "foreground_random", "first"} <= set(strategies)
    described = {name: s["description"] for name, s in strategies.items()}
    assert "never runs a network" in described["uncertain_slices"] and "scored=false" in described["uncertain_slices"]
    assert "foreground" in described["foreground_random"] and "nnActive" in described["foreground_random"]
    assert "equally likely" in described["random"]
