"""Train options as viewers send them, and the replay mix of an incremental round."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch

from lib.errors import UserError
from lib.training.incremental import RoundSettings, guard_tolerance, mixed, replay_weights
from lib.training.slices import SliceSet


def test_defaults():
    s = RoundSettings.from_request({})
    assert s == RoundSettings()
    assert (s.epochs, s.batch_size, s.crop, s.replay_share, s.freeze_norm) == (4, 4, 240, 0.5, True)
    s.check()  # the defaults are valid options
    # empty values (an unset field in a viewer form) keep the default
    assert RoundSettings.from_request({"epochs": "", "lr": None, "freeze_norm": ""}) == RoundSettings()


def test_aliases():
    s = RoundSettings.from_request({"max_epochs": 7, "train_batch_size": 2, "learning_rate": 0.01})
    assert (s.epochs, s.batch_size, s.lr) == (7, 2, 0.01)
    assert asdict(s) == {**asdict(RoundSettings()), "epochs": 7, "batch_size": 2, "lr": 0.01}


def test_viewer_strings_are_converted():
    s = RoundSettings.from_request({"epochs": "3", "lr": "0.001", "crop": "96", "replay_share": "0.25",
                                    "tolerance": "0", "device": "cuda:0", "freeze_norm": "false"})
    assert (s.epochs, s.lr, s.crop, s.replay_share, s.tolerance, s.device, s.freeze_norm) == (
        3, 0.001, 96, 0.25, 0.0, "cuda:0", False)
    assert type(s.epochs) is int and type(s.crop) is int and type(s.lr) is float
    assert RoundSettings.from_request({"epochs": "2.0"}).epochs == 2  # a number field sent as float


@pytest.mark.parametrize("value,expected", [("true", True), ("false", False), ("True", True), ("FALSE", False),
                                            ("1", True), ("0", False), ("yes", True), ("no", False),
                                            (True, True), (False, False), (1, True), (0, False)])
def test_freeze_norm_from_strings_and_bools(value, expected):
    assert RoundSettings.from_request({"freeze_norm": value}).freeze_norm is expected


def test_unknown_keys_are_ignored():
    s = RoundSettings.from_request({"client_id": "slicer", "model": "segmentation_thigh", "multi_gpu": True,
                                    "gpus": "all", "epochs": "3", "max_epochs_typo": "not a number"})
    assert s == RoundSettings(epochs=3)


def test_viewer_strings_aliases_and_extras_together():
    s = RoundSettings.from_request({"max_epochs": "3", "train_batch_size": 2, "lr": "0.001", "freeze_norm": "false",
                                    "model": "segmentation_thigh", "client_id": "slicer", "multi_gpu": True})
    assert (s.epochs, s.batch_size, s.lr, s.freeze_norm) == (3, 2, 0.001, False)


@pytest.mark.parametrize("params,option", [
    ({"epochs": "many"}, "epochs"), ({"epochs": 0}, "epochs"), ({"max_epochs": "-1"}, "epochs"),
    ({"epochs": "inf"}, "epochs"), ({"batch_size": "two"}, "batch_size"), ({"steps_per_epoch": 0}, "steps_per_epoch"),
    ({"lr": 0}, "lr"), ({"lr": "1"}, "lr"), ({"lr": "fast"}, "lr"), ({"lr": "nan"}, "lr"),
    ({"crop": 100}, "crop"), ({"crop": 0}, "crop"), ({"crop": -48}, "crop"),
    ({"replay_share": 1.0}, "replay_share"), ({"replay_share": "-0.1"}, "replay_share"),
    ({"val_fraction": 1}, "val_fraction"), ({"tolerance": -0.1}, "tolerance"),
    ({"phantom_tolerance": "-0.01"}, "phantom_tolerance"),
    ({"freeze_norm": "maybe"}, "freeze_norm"), ({"keep_versions": 0}, "keep_versions")])
def test_bad_options_are_user_errors_naming_the_option(params, option):
    with pytest.raises(UserError, match=option):
        RoundSettings.from_request(params)


@pytest.mark.parametrize("params, phantoms_only, expected", [
    ({}, False, 0.005),  # the user's validation images judge: the strict tolerance
    ({}, True, 0.02),  # phantoms alone judge a segmenter: it may adapt to the user's site
    ({"phantom_tolerance": 0}, True, 0.005),  # a strict site: never more than the tolerance
    ({"tolerance": 1.0}, True, 1.0),  # publish whatever (as a test or an expert asks): not narrowed
    ({"tolerance": 0.01, "phantom_tolerance": 0.05}, False, 0.01),
])
def test_the_guard_widens_only_when_phantoms_alone_judge(params, phantoms_only, expected):
    assert guard_tolerance(RoundSettings.from_request(params), phantoms_only) == expected


@pytest.mark.parametrize("n_user,n_replay,share", [(3, 7, 0.3), (1, 100, 0.5), (50, 2, 0.8), (4, 4, 0.0)])
def test_replay_weights_give_replay_exactly_its_share(n_user, n_replay, share):
    w = replay_weights(n_user, n_replay, share)
    assert w.shape == (n_user + n_replay,)
    assert np.isclose(w[n_user:].sum() / w.sum(), share)
    assert np.allclose(w[:n_user], w[0]) and np.allclose(w[n_user:], w[-1])  # uniform within each group


@pytest.mark.parametrize("n_user,n_replay", [(0, 5), (4, 0), (0, 0)])
def test_replay_weights_are_all_ones_when_a_group_is_empty(n_user, n_replay):
    w = replay_weights(n_user, n_replay, 0.3)
    assert w.shape == (n_user + n_replay,) and (w == 1).all()


def slice_set(n: int, value: float, source: str, weight: float = 1.0) -> SliceSet:
    return SliceSet(torch.full((n, 1, 8, 8), value), torch.full((n, 1, 8, 8), int(value * 10), dtype=torch.uint8),
                    np.full(n, weight), [source] * n)


def test_mixed_puts_user_slices_first_and_gives_replay_its_share():
    user = slice_set(2, 0.5, "patient_1", weight=3.0)
    replay = slice_set(6, 0.2, "phantom")
    data = mixed(user, replay, 0.25)
    assert len(data) == 8 and data.sources == ["patient_1"] * 2 + ["phantom"] * 6
    assert torch.equal(data.images[:2], user.images) and torch.equal(data.images[2:], replay.images)
    assert torch.equal(data.labels[:2], user.labels) and torch.equal(data.labels[2:], replay.labels)
    assert np.isclose(data.weights[2:].sum() / data.weights.sum(), 0.25)
    assert np.allclose(data.weights[:2], data.weights[0]) and np.allclose(data.weights[2:], data.weights[-1])
    assert (user.weights == 3.0).all() and (replay.weights == 1.0).all()  # the inputs are left as they were
    # drawing as segmentation_batches does: about a quarter of the draws are replay
    draws = np.random.default_rng(0).choice(len(data), size=20_000, p=data.weights / data.weights.sum())
    assert abs((draws >= 2).mean() - 0.25) < 0.02


def test_mixed_with_an_empty_group_draws_every_slice_alike():
    user = slice_set(3, 0.5, "patient_1")
    empty = SliceSet.empty(8)
    for data in (mixed(user, empty, 0.5), mixed(empty, user, 0.5)):
        assert len(data) == 3 and (data.weights == 1).all() and data.sources == ["patient_1"] * 3


def test_mixed_equal_halves_of_the_draws():
    one = slice_set(2, 0.1, "u")
    many = slice_set(6, 0.2, "p")
    data = mixed(one, many, 0.5)
    assert len(data) == 8 and np.isclose(data.weights[:2].sum(), data.weights[2:].sum())
