"""Train options as viewers send them, and the replay mix of an incremental round."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lib.errors import UserError
from lib.training.incremental import RoundSettings, mixed, replay_weights
from lib.training.slices import SliceSet


def test_viewer_strings_aliases_and_extras():
    s = RoundSettings.from_request({"max_epochs": "3", "train_batch_size": 2, "lr": "0.001", "freeze_norm": "false",
                                    "model": "segmentation_thigh", "client_id": "slicer", "multi_gpu": True})
    assert (s.epochs, s.batch_size, s.lr, s.freeze_norm) == (3, 2, 0.001, False)
    assert RoundSettings.from_request({}) == RoundSettings()


@pytest.mark.parametrize("params,words", [({"epochs": "many"}, "epochs"), ({"epochs": 0}, "epochs"),
                                          ({"lr": 0}, "lr"), ({"crop": 100}, "crop"),
                                          ({"replay_share": 1.0}, "replay_share"), ({"freeze_norm": "maybe"}, "freeze_norm")])
def test_bad_options_name_the_option(params, words):
    with pytest.raises(UserError, match=words):
        RoundSettings.from_request(params)


def test_replay_gets_its_share_of_the_draws():
    w = replay_weights(3, 7, 0.3)
    assert np.isclose(w[3:].sum() / w.sum(), 0.3) and len(set(w[:3])) == 1 and len(set(w[3:])) == 1
    assert (replay_weights(0, 5, 0.3) == 1).all() and (replay_weights(4, 0, 0.3) == 1).all()
    one = SliceSet(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8, dtype=torch.uint8), np.ones(2), ["u", "u"])
    many = SliceSet(torch.zeros(6, 1, 8, 8), torch.zeros(6, 1, 8, 8, dtype=torch.uint8), np.ones(6), ["p"] * 6)
    data = mixed(one, many, 0.5)
    assert len(data) == 8 and np.isclose(data.weights[:2].sum(), data.weights[2:].sum())
