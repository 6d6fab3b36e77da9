"""The model store: network names, which weight file is live, and the weights a run asks for."""

from __future__ import annotations

import os

import pytest

from lib.errors import UserError
from lib.models.catalog import CLASSIFIER, NETWORKS, SEGMENTERS, region_of, segmenter_name, weight_file
from lib.models.store import ModelStore, live_path, live_weights
from lib.paths import SHIPPED_WEIGHTS


def test_the_networks_are_the_classifier_and_one_segmenter_per_region():
    assert NETWORKS == ("classifier", "segmentation_thigh", "segmentation_leg")
    assert SEGMENTERS == (segmenter_name("thigh"), segmenter_name("leg"))
    assert [region_of(n) for n in NETWORKS] == [None, "thigh", "leg"]
    with pytest.raises(ValueError):
        segmenter_name("arm")


def test_the_live_file_wins_once_it_exists(tmp_path):
    store = ModelStore(tmp_path / "model")
    candidates = store.candidates(CLASSIFIER)
    assert candidates == [str(SHIPPED_WEIGHTS / "classifier.pt"), str(tmp_path / "model" / "classifier.pt")]
    assert live_path(candidates) == candidates[0]
    weight_file(store.model_dir, CLASSIFIER).parent.mkdir(parents=True)
    weight_file(store.model_dir, CLASSIFIER).write_bytes(b"published")
    assert live_path(candidates) == candidates[1]
    assert live_path([str(tmp_path / "missing.pt")]) is None


def test_the_version_key_changes_exactly_when_a_file_changes(tmp_path):
    store = ModelStore(tmp_path / "model")
    files, key = live_weights(store.paths())
    assert files == {n: str(SHIPPED_WEIGHTS / f"{n}.pt") for n in NETWORKS}
    assert live_weights(store.paths()) == (files, key)
    published = weight_file(store.model_dir, "segmentation_leg")
    published.parent.mkdir(parents=True)
    published.write_bytes(b"other weights")
    changed_files, changed_key = live_weights(store.paths())
    assert changed_files["segmentation_leg"] == str(published) and changed_key != key
    assert changed_key.split("+")[0] == key.split("+")[0]  # the classifier's part is the same


def test_a_run_asks_for_live_shipped_or_kept_versions(tmp_path):
    store = ModelStore(tmp_path / "model")
    assert store.weights("live") == store.paths()
    assert store.weights("shipped") == {n: [str(SHIPPED_WEIGHTS / f"{n}.pt")] for n in NETWORKS}
    kept = store.registry("segmentation_thigh").version_file(3)
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"v3")
    for asked in ("v3", "segmentation_thigh:v3"):
        chosen = store.weights(asked)
        assert chosen["segmentation_thigh"] == [str(kept)]
        assert chosen["classifier"] == store.candidates("classifier")  # the others stay live
    for wrong in ("v2", "classifier:v3", "leg:v3", "latest"):
        with pytest.raises(UserError):
            store.weights(wrong)
    assert os.path.basename(kept) == "v0003.pt"
