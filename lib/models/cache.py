"""The inference copy of each network, loaded once and reloaded when its file changes.

A network is loaded once per (file, modification time, device), with batch norms folded and its
fast layout (``lib.networks.fast``), and reloaded when training publishes or a rollback replaces
the file, so the server picks up a new model without a restart.
"""

from __future__ import annotations

import os
import threading

import torch

from lib.errors import NotFoundError
from lib.models.store import live_path
from lib.networks.checkpoint import build_from_checkpoint
from lib.networks.compiled import allow_compiling
from lib.networks.fast import prepare_for_inference

_cache: dict[tuple[str, str], tuple[float, torch.nn.Module, dict]] = {}
_lock = threading.Lock()


def load_network(path, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """The inference copy of the network in ``path`` (BN folded, fast layout) and its meta."""
    mtime = os.path.getmtime(path)
    key = (os.path.realpath(path), str(device))
    with _lock:
        cached = _cache.get(key)
        if cached is not None and cached[0] == mtime:
            return cached[1], cached[2]
        model, meta = build_from_checkpoint(path, map_location="cpu", return_meta=True)
        model = prepare_for_inference(model, device=device)
        allow_compiling(model, meta.get("name") or os.path.splitext(os.path.basename(path))[0], device)
        _cache[key] = (mtime, model, meta)
        return model, meta


def live_network_and_meta(paths: dict[str, list[str]], name: str, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """The inference copy of network ``name``'s live weights among its candidates in ``paths``, and
    their meta (what input the network expects, how it was made)."""
    path = live_path(paths[name])
    if path is None:
        raise NotFoundError(f"no weights for {name}: run `python main.py pretrain`")
    return load_network(path, device)


def live_network(paths: dict[str, list[str]], name: str, device: str = "cpu") -> torch.nn.Module:
    """The inference copy of network ``name``'s live weights among its candidates in ``paths``."""
    return live_network_and_meta(paths, name, device)[0]
