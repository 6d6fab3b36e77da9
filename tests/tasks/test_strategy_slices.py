"""Slice-level active learning through the real server and MONAI Label's own client."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import requests
import torch
from monailabel.client import MONAILabelClient

from lib.paths import SHIPPED_WEIGHTS
from lib.data.datastore import MuscleDatastore
from lib.data.io import save_nifti
from lib.data.phantom import generate_phantom
from lib.networks.checkpoint import build_from_checkpoint, save_checkpoint
from lib.tasks.slice_uncertainty import slice_embeddings, stored_slice_order, typicality
from lib.tasks.strategy_slices import (UncertainSlices, choose_image, parse_params, pick_spread, pick_stratified,
                                       rank_slices)
from lib.errors import UserError
from tests.conftest import Server

THIGH = "thigh_al"
EMPTY_SLICES = {0, 9}  # outside the field of view: no tissue at all
NETWORKS = ("classifier", "segmentation_thigh", "segmentation_leg")


@pytest.fixture(scope="module")
def al_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("al")
    studies = base / "studies"
    studies.mkdir()
    thigh = generate_phantom("thigh", 20_021, n_slices=10, severity="mild", spacing=(1.037037, 1.037037, 5.0))
    image = thigh.image.copy()
    image[:, :, sorted(EMPTY_SLICES)] = 0
    save_nifti(studies / f"{THIGH}.nii.gz", image, thigh.affine)
    leg = generate_phantom("leg", 20_022, n_slices=4, severity="healthy", spacing=(1.037037, 1.037037, 5.0))
    save_nifti(studies / "leg_al.nii.gz", leg.image, leg.affine)
    srv = Server(studies, base / "server.log")
    srv.truth = {THIGH: thigh.label, "leg_al": leg.label}
    with srv:
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


def test_suggestions_are_spread_tissue_slices_and_never_repeat_once_annotated(al_server, tmp_path):
    annotated = set()
    for _ in range(2):
        r = next_sample(al_server, n=3, region="thigh")
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["id"] == THIGH and answer["region"] == "thigh" and answer["slice"] == answer["slices"][0]
        slices = answer["slices"]
        assert 1 <= len(slices) <= 3 and all(abs(a - b) > 1 for a in slices for b in slices if a != b)
        assert not set(slices) & EMPTY_SLICES  # never an empty slice outside the limb
        assert not set(slices) & annotated  # never one already corrected
        assert image_info(al_server, THIGH)["suggested_slices"]["slices"] == slices  # visible to viewers
        annotated |= set(slices)
        save_truth(al_server, THIGH, sorted(annotated), tmp_path)
    left = next_sample(al_server, n=20, region="thigh").json()
    assert not set(left.get("slices", [])) & (annotated | EMPTY_SLICES)


def test_monai_label_client_gets_id_and_slice(al_server):
    answer = MONAILabelClient(al_server.url).next_sample("uncertain_slices", {"n": 2})
    assert answer["id"] in al_server.truth and isinstance(answer["slice"], int) and answer["path"]
    random_answer = MONAILabelClient(al_server.url).next_sample("random", {"n": 2})
    assert random_answer["id"] in al_server.truth and isinstance(random_answer["slice"], int)
    assert not (random_answer["id"] == THIGH and set(random_answer["slices"]) & EMPTY_SLICES)
    first = MONAILabelClient(al_server.url).next_sample("first", {})  # MONAI Label's image-level strategy
    assert first["id"] in al_server.truth


def test_scores_are_cached_per_model_version_and_refreshed_after_a_publish(al_server):
    al_server.run_scoring("slice_uncertainty", timeout=300)
    first = image_info(al_server, "leg_al")["slice_scores"]
    assert len(first["slices"]) == 4
    al_server.run_scoring("slice_uncertainty", timeout=300)
    assert image_info(al_server, "leg_al")["slice_scores"]["time"] == first["time"]  # cached: same model

    model = build_from_checkpoint(SHIPPED_WEIGHTS / "segmentation_leg.pt")  # a "new" published leg model
    with torch.no_grad():
        next(model.parameters()).mul_(0.5)
    save_checkpoint(al_server.model_dir / "segmentation_leg.pt", model, {"name": "segmentation_leg"})
    next_sample(al_server, n=1, region="leg")  # the strategy notices the new version
    refreshed = image_info(al_server, "leg_al")["slice_scores"]
    assert refreshed["model"] != first["model"] and "segmentation_leg" in refreshed["model"]


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


def test_pick_spread_and_params():
    assert pick_spread([(0.9, 4), (0.8, 5), (0.7, 3), (0.6, 8), (0.5, 1)], 3) == [4, 8, 1]
    assert parse_params({"n": "2", "region": "leg", "client_id": "x"}) == (2, "leg")
    with pytest.raises(UserError):
        parse_params({"n": 21})
    superior_first = np.diag([-1.0, -1.0, -5.0, 1.0])  # stored head to foot
    assert list(stored_slice_order(superior_first, 4)) == [3, 2, 1, 0]
    assert list(stored_slice_order(np.diag([-1.0, -1.0, 5.0, 1.0]), 4)) == [0, 1, 2, 3]


def ranked(scores: dict[int, float]) -> list[tuple[float, int]]:
    return sorted(((v, k) for k, v in scores.items()), reverse=True)


def test_stratified_picks_cover_the_limb_instead_of_bunching_at_its_uncertain_end():
    rising = ranked({k: k / 12 for k in range(12)})  # the most uncertain slices all at one end
    assert pick_spread(rising, 3) == [11, 9, 7]
    assert pick_stratified(rising, 3) == [11, 7, 3]  # the best of each third, best first
    assert pick_stratified(rising, 1) == [11]


def test_stratified_picks_are_never_adjacent_and_top_up_from_crowded_stretches():
    assert pick_stratified(ranked({1: 0.9, 2: 0.8, 5: 0.7, 3: 0.6, 0: 0.1, 4: 0.1}), 3) == [1, 5, 3]
    # the middle stretch is empty: its place goes to the best non-adjacent slice elsewhere
    assert pick_stratified(ranked({0: 0.9, 10: 0.5, 1: 0.4, 2: 0.3}), 3) == [0, 10, 2]
    assert pick_stratified(ranked({1: 0.9, 10: 0.5, 0: 0.4, 2: 0.3}), 3) == [1, 10]
    assert pick_stratified([], 3) == []


def test_the_image_with_the_best_picks_wins_and_annotated_slices_are_never_picked():
    def slices(values):
        return [{"slice": k, "score": v, "region": "thigh", "empty": False} for k, v in enumerate(values)]

    spiky = slices([0.0] * 11 + [1.0])  # one very uncertain slice, the rest certain
    broad = slices([0.4] * 12)
    assert choose_image([("spiky", spiky, set()), ("broad", broad, set())], 1)[0] == "spiky"
    key, picks, _ = choose_image([("spiky", spiky, set()), ("broad", broad, set())], 3)
    assert key == "broad" and len(picks) == 3
    key, picks, _ = choose_image([("broad", broad, {0, 5, 11})], 4)
    assert not set(picks) & {0, 5, 11}
    assert choose_image([("done", slices([0.5, 0.5]), {0, 1})], 2) is None


def test_typicality_ranks_an_outlier_last_and_scales_to_one():
    rng = np.random.default_rng(0)
    cluster = rng.normal(0, 0.05, (6, 4))
    outlier = np.full((1, 4), 3.0)
    values = typicality(np.concatenate([cluster, outlier]), k=3)
    assert values.shape == (7,) and values.max() == pytest.approx(1.0)
    assert values.argmin() == 6 and values[6] < 0.1 * values[:6].min()
    assert typicality(np.zeros((1, 4))).tolist() == [1.0]


def test_a_typical_slice_beats_a_slightly_more_uncertain_outlier_when_scores_carry_typicality():
    scores = [{"slice": 0, "score": 0.5, "region": "thigh", "empty": False, "typicality": 0.2},
              {"slice": 5, "score": 0.4, "region": "thigh", "empty": False, "typicality": 1.0}]
    assert rank_slices(scores, set())[0][1] == 5
    assert rank_slices([{k: v for k, v in s.items() if k != "typicality"} for s in scores], set())[0][1] == 0


def test_slice_embeddings_are_unit_vectors_of_the_deepest_encoder_level():
    model = build_from_checkpoint(SHIPPED_WEIGHTS / "segmentation_thigh.pt").eval()
    slices = torch.rand(3, 1, 96, 96)
    slices[2] = slices[0]
    embeddings = slice_embeddings(model, slices)
    assert embeddings.shape == (3, model.encoder[-1].conv2.out_channels)  # 256 for the compact preset
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(3), atol=1e-4)
    assert torch.allclose(embeddings[0], embeddings[2], atol=1e-5) and not torch.allclose(embeddings[0], embeddings[1])
