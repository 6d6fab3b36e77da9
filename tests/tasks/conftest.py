"""Infer tasks built from the configs exactly as the app builds them (shipped weights)."""

import pytest

from lib.configs import CONFIGS
from lib.paths import APP_MODEL_DIR


@pytest.fixture(scope="session")
def tasks(tmp_path_factory):
    """Every served infer task; the live-model folder is empty so the shipped weights are used."""
    model_dir = tmp_path_factory.mktemp("model")
    out = {}
    for name, config_class in CONFIGS.items():
        config = config_class()
        config.init(name, str(model_dir), {}, None)
        out[name] = config.infer()
    assert APP_MODEL_DIR.name == "model"
    return out
