"""MONAI Label settings this app needs, whichever way the server was started.

Applied by the app itself, so ``monailabel start_server --app apps/muscle`` behaves like
``python main.py serve``. A value the user chose wins: a setting is changed only while it still
holds MONAI Label's own default (``start_server`` copies every setting into the environment, so
the environment alone cannot tell what the user set).
"""

from __future__ import annotations

import json
import os

SERVER_DEFAULTS = {
    "MONAI_LABEL_TRACKING_ENABLED": False,  # mlflow 3.17's file store makes training fail (SPEC §8)
    "MONAI_LABEL_DICOMWEB_SEARCH_FILTER": {"Modality": "MR"},  # MONAI Label filters CT by default
    "MONAI_LABEL_AUTO_UPDATE_SCORING": False,  # slice scores: on demand, after a publish and by the strategy; not at every start
}


def apply_server_defaults() -> None:
    """Set each default in the environment (for subprocesses) and in MONAI Label's settings."""
    from monailabel.config import settings

    for key, value in SERVER_DEFAULTS.items():
        if getattr(settings, key) != type(settings).model_fields[key].default:
            continue
        os.environ[key] = json.dumps(value) if isinstance(value, dict) else str(value).lower()
        setattr(settings, key, value)
