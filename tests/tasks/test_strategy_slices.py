"""Slice-level active learning through the real server and MONAI Label's own client."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import requests
import torch
from monailabel.client import MONAILabelClient

from lib.data.datastore.local import MuscleDatastore
from lib.data.io import save_nifti
from lib.data.phantoms.phantom import generate_phantom
from lib.errors import UserError
from lib.labels import THIGH_MUSCLES
from lib.networks.checkpoint import build_from_checkpoint, save_checkpoint
from lib.paths import SHIPPED_WEIGHTS
from lib.tasks.scoring_slices import SCORES_FORMAT, images_to_score, score_state
from lib.tasks.strategy_slices import UncertainSlices, parse_params
from tests.conftest import Server

THIGH = "thigh_al"
EMPTY_SLICES = {0, 15}  # outside the field of view: no tissue at all
NETWORKS = ("classifier", "segmentation_thigh", "segmentation_leg")


@pytest.fixture(scope="module")
def al_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("al")
    studies = base / "studies"
    studies.mkdir()
    thigh = generate_phantom("thigh", 20_021, n_slices=16, severity="mild", spacing=(1.037037, 1.037037, 5.0))
    image = thigh.image.copy()
    image[:, :, sorted(EMPTY_SLICES)] = 0
    save_nifti(studies / f"{THIGH}.nii.gz", image, thigh.affine)
    leg = generate_phantom("leg", 20_022, n_slices=4, severity="healthy", spacing=(1.037037, 1.037037, 5.0))
    save_nifti(studies / "leg_al.nii.gz", leg.image, leg.affine)
    srv = Server(studies, base / "server.log")
    srv.truth = {THIGH: thigh.label, "leg_al": leg.label}
    with srv:
        srv.wait_scoring_idle()  # the slice scoring the server queued at start-up
        yield srv


def next_sample(server, strategy="uncertain_slices", **params):
    return requests.post(f"{server.url}/activelearning/{strategy}", json=params, timeout=300)


def image_info(server, image_id):
    return requests.get(f"{server.url}/datastore/image/info", params={"image": image_id}, timeout=30).json()


def save_truth(server, image_id, slices, tmp_path):
    truth = server.truth[image_id]
    label = np.zeros_like(truth)
    label[:, :, slices] = truth[:, :, slices]
    affine = nib.load(server.studies / f"{image_id}.nii.gz").affine
    save_nifti(tmp_path / "label.nii.gz", label.astype(np.uint8), affine)
    with open(tmp_path / "label.nii.gz", "rb") as f:
        r = requests.put(f"{server.url}/datastore/label", params={"image": image_id, "tag": "final"},
                         data={"params": json.dumps({"annotated_slices": slices})},
                         files={"label": ("label.nii.gz", f)}, timeout=60)
    assert r.status_code == 200, r.text


def test_images_are_scored_in_the_background_from_start_up(al_server):
    tasks = requests.get(f"{al_server.url}/scoring/", params={"all": True}, timeout=30).json()
    assert [t["request"]["method"] for t in tasks] == ["slice_uncertainty"] and tasks[0]["status"] == "DONE"
    versions = {image_info(al_server, i)["slice_scores"]["model"] for i in al_server.truth}
    assert len(versions) == 1 and "segmentation_leg" in versions.pop()


def test_suggestions_are_spread_tissue_slices_and_never_repeat_once_annotated(al_server, tmp_path):
    annotated = set()
    for _ in range(2):
        r = next_sample(al_server, n=3, region="thigh")
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["id"] == THIGH and answer["region"] == "thigh" and answer["slice"] == answer["slices"][0]
        assert answer["scored"] is True and answer["unscored_images"] == 0
        slices = answer["slices"]
        assert 1 <= len(slices) <= 3 and all(abs(a - b) > 1 for a in slices for b in slices if a != b)
        assert not set(slices) & EMPTY_SLICES  # never an empty slice outside the limb
        assert not set(slices) & annotated  # never one already corrected
        assert image_info(al_server, THIGH)["suggested_slices"]["slices"] == slices  # visible to viewers
        annotated |= set(slices)
        save_truth(al_server, THIGH, sorted(annotated), tmp_path)
    left = next_sample(al_server, n=20, region="thigh").json()
    assert not set(left.get("slices", [])) & (annotated | EMPTY_SLICES)


def drawn_thigh_answers(server, strategy: str, times: int = 6) -> list[dict]:
    """``times`` answers of a drawing strategy for 2 thigh slices, each checked as every
    slice-level answer must be: the scored thigh, its tissue slices, none adjacent, and the
    suggestion kept in the image's info under the strategy's name."""
    answers = []
    for _ in range(times):
        r = next_sample(server, strategy, n=2, region="thigh")
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["id"] == THIGH and answer["scored"] is True
        assert answer["slice"] == answer["slices"][0] and not set(answer["slices"]) & EMPTY_SLICES
        assert all(abs(a - b) > 1 for a in answer["slices"] for b in answer["slices"] if a != b)
        assert image_info(server, THIGH)["suggested_slices"]["strategy"] == strategy
        answers.append(answer)
    return answers


def test_power_uncertain_draws_scored_tissue_slices_and_varies_its_picks(al_server):
    answers = [tuple(answer["slices"]) for answer in drawn_thigh_answers(al_server, "power_uncertain")]
    assert len(set(answers)) > 1  # a draw, not the same argmax every time (uncertain_slices repeats itself)
    described = requests.get(f"{al_server.url}/info/", timeout=30).json()["strategies"]["power_uncertain"]
    assert "power" in described["description"] and "score^8" in described["description"]


def test_class_stratified_names_the_muscle_of_each_slice_and_spreads_over_muscles(al_server):
    cached = image_info(al_server, THIGH)["slice_scores"]
    assert cached["format"] == SCORES_FORMAT
    tissue = [s for s in cached["slices"] if not s["empty"]]
    assert all(set(s["classes"]) == set(THIGH_MUSCLES) for s in tissue if s["region"] == "thigh")
    assert all(sum(s["classes"].values()) <= s["score"] + 1e-4 for s in tissue)  # shares of the slice's score
    muscles = []
    for answer in drawn_thigh_answers(al_server, "class_stratified"):
        assert len(answer["muscles"]) == len(answer["slices"])
        assert set(answer["muscles"]) <= set(THIGH_MUSCLES) | {None}
        muscles += answer["muscles"]
    assert len(set(muscles) - {None}) >= 4  # 12 thigh muscles drawn at random, 2 per request: 4 or fewer, p < 1e-5
    described = requests.get(f"{al_server.url}/info/", timeout=30).json()["strategies"]["class_stratified"]
    assert "ClaSP" in described["description"] and "muscle" in described["description"]


def test_monai_label_client_gets_id_and_slice(al_server):
    answer = MONAILabelClient(al_server.url).next_sample("uncertain_slices", {"n": 2})
    assert answer["id"] in al_server.truth and isinstance(answer["slice"], int) and answer["path"]
    random_answer = MONAILabelClient(al_server.url).next_sample("random", {"n": 2})
    assert random_answer["id"] in al_server.truth and isinstance(random_answer["slice"], int)
    assert not (random_answer["id"] == THIGH and set(random_answer["slices"]) & EMPTY_SLICES)
    foreground = MONAILabelClient(al_server.url).next_sample("foreground_random", {"n": 2})
    assert foreground["id"] in al_server.truth and not (foreground["id"] == THIGH and set(foreground["slices"]) & EMPTY_SLICES)
    first = MONAILabelClient(al_server.url).next_sample("first", {})  # MONAI Label's image-level strategy
    assert first["id"] in al_server.truth


def test_scores_are_cached_per_model_version_and_refreshed_after_a_publish(al_server):
    first = image_info(al_server, "leg_al")["slice_scores"]
    assert len(first["slices"]) == 4
    task = al_server.run_scoring("slice_uncertainty", timeout=300)
    assert task["status"] == "DONE"
    assert image_info(al_server, "leg_al")["slice_scores"]["time"] == first["time"]  # cached: same model

    model = build_from_checkpoint(SHIPPED_WEIGHTS / "segmentation_leg.pt")  # a "new" published leg model
    with torch.no_grad():
        next(model.parameters()).mul_(0.5)
    save_checkpoint(al_server.model_dir / "segmentation_leg.pt", model, {"name": "segmentation_leg"})
    answer = next_sample(al_server, n=1, region="leg").json()  # at once, from the earlier model's scores
    assert answer["id"] == "leg_al" and answer["scored"] is False and answer["stale"] is True
    assert answer["unscored_images"] == 2
    al_server.wait_scoring_idle(600)  # the strategy queued the background scoring
    refreshed = image_info(al_server, "leg_al")["slice_scores"]
    assert refreshed["model"] != first["model"] and "segmentation_leg" in refreshed["model"]
    answer = next_sample(al_server, n=1, region="leg").json()
    assert answer["scored"] is True and answer["unscored_images"] == 0


def test_an_uploaded_image_is_scored_in_the_background(al_server, tmp_path):
    leg = generate_phantom("leg", 20_023, n_slices=3, severity="severe", spacing=(1.037037, 1.037037, 5.0))
    path = save_nifti(tmp_path / "leg_upload.nii.gz", leg.image, leg.affine)
    r = requests.put(f"{al_server.url}/datastore/image", params={"image": "leg_upload"},
                     files={"file": (path.name, path.read_bytes())}, timeout=120)
    assert r.status_code == 200, r.text
    al_server.wait_scoring_idle(600)  # queued by the upload: no one asked for it
    scores = image_info(al_server, "leg_upload")["slice_scores"]
    assert len(scores["slices"]) == 3 and scores["model"] == image_info(al_server, "leg_al")["slice_scores"]["model"]


def test_bad_params_are_refused_with_a_message(al_server):
    for params, words in (({"n": 0}, "n must be"), ({"n": "many"}, "integer"), ({"region": "arm"}, "region"),
                          ({"colour": "red"}, "unknown strategy params")):
        r = next_sample(al_server, **params)
        assert r.status_code == 422 and words in r.json()["detail"], (params, r.text)


def test_nothing_unlabelled_gives_an_empty_answer(tmp_path):
    (tmp_path / "studies").mkdir()
    datastore = MuscleDatastore(str(tmp_path / "studies"), auto_reload=False)
    paths = {n: [str(SHIPPED_WEIGHTS / f"{n}.pt"), str(tmp_path / f"{n}.pt")] for n in NETWORKS}
    assert UncertainSlices(paths)({"strategy": "uncertain_slices"}, datastore) == {}


def test_scores_cached_before_per_muscle_shares_are_stale_until_scored_again(tmp_path):
    (tmp_path / "studies").mkdir()
    leg = generate_phantom("leg", 20_024, n_slices=2, severity="mild", spacing=(1.037037, 1.037037, 5.0))
    save_nifti(tmp_path / "studies" / "old.nii.gz", leg.image, leg.affine)
    datastore = MuscleDatastore(str(tmp_path / "studies"), auto_reload=False)
    old = [{"slice": k, "score": 0.5, "region": "leg", "confidence": 0.9, "empty": False} for k in range(2)]
    datastore.update_image_info("old", {"slice_scores": {"model": "v1", "time": 0, "slices": old}})
    assert score_state(datastore, "old", "v1") == ("stale", old)  # still used, ranked after live scores
    assert images_to_score(datastore, "v1") == ["old"]  # and scored again by the background task
    datastore.update_image_info("old", {"slice_scores": {"model": "v1", "format": SCORES_FORMAT, "slices": old}})
    assert score_state(datastore, "old", "v1")[0] == "live" and images_to_score(datastore, "v1") == []


def test_params():
    assert parse_params({"n": "2", "region": "leg", "client_id": "x"}) == (2, "leg")
    with pytest.raises(UserError):
        parse_params({"n": 21})
