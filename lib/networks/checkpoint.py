"""Safe weight files for the networks of Agosti et al., MAGMA 2022 (SPEC §4, §7).

A checkpoint is a ``torch.save`` of ``{"format", "meta_json", "state_dict"}``: tensors and
plain strings only, read back with ``torch.load(weights_only=True)``, so loading never
unpickles arbitrary objects (the published Dafne model files are pickles that run code).
``meta`` is any JSON-able dict (preset, region, classes, version, Dice…); ``save_checkpoint``
adds ``network`` ("segmenter" / "classifier" / "ensemble") and ``config`` (the constructor arguments), which
``build_from_checkpoint`` uses to rebuild the right network. Writes are atomic and durable
(``lib.files``): a reader never loads half a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from lib.errors import UserError
from lib.files import write_atomic
from lib.networks.classifier import RegionClassifier
from lib.networks.ensemble import SoftmaxEnsemble
from lib.networks.logit_adjustment import attach
from lib.networks.segmenter import ResidualVNet2D

FORMAT = "muscle-networks/1"
NETWORKS = {"segmenter": ResidualVNet2D, "classifier": RegionClassifier, "ensemble": SoftmaxEnsemble}


class CheckpointError(UserError):
    """A weight file that cannot be used: corrupt, foreign, or not matching its network."""


def network_kind(model: nn.Module) -> str:
    """ "segmenter", "classifier" or "ensemble" for a model of this package; ValueError otherwise."""
    for kind, cls in NETWORKS.items():
        if isinstance(model, cls):
            return kind
    raise ValueError(f"not a network of lib.networks: {type(model).__name__}")


def save_checkpoint(path: str | os.PathLike, model: nn.Module, meta: dict | None = None,
                    storage_dtype: torch.dtype | None = None) -> Path:
    """Write ``model``'s weights and ``meta`` to ``path`` atomically; returns the path.

    Args:
        path: destination file (its folder is created); an existing file is replaced whole.
        model: a ``ResidualVNet2D``, ``RegionClassifier`` or ``SoftmaxEnsemble`` (unwrapped, not
            BN-folded).
        meta: JSON-able description, e.g. ``{"preset": "compact", "region": "thigh",
            "classes": [...], "version": 3}``; ``network`` and ``config`` are added.
        storage_dtype: store floating-point tensors in this dtype (``torch.float16`` halves the
            shipped files); loading casts them back to the model's dtype. None keeps them as is.
    """
    if getattr(model, "bn_folded", False):
        raise ValueError("cannot save a BN-folded inference model: save the original model")
    meta = {**(meta or {}), "network": network_kind(model), "config": dict(model.config)}
    try:
        meta_json = json.dumps(meta, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"checkpoint meta must be JSON-able: {e}") from e
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if storage_dtype is not None:
        state = {k: v.to(storage_dtype) if v.is_floating_point() else v for k, v in state.items()}
    payload = {"format": FORMAT, "meta_json": meta_json, "state_dict": state}
    return write_atomic(path, lambda f: torch.save(payload, f), durable=True)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> tuple[dict, dict]:
    """Read a checkpoint safely (``weights_only=True``); returns ``(state_dict, meta)``.

    Raises FileNotFoundError for a missing file and ``CheckpointError`` for anything that is
    not a checkpoint of this format (truncated, foreign pickle, other program's file).

    Args:
        path: the file written by ``save_checkpoint``.
        map_location: where tensors go (``torch.load``'s argument), default CPU.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, unpickling refused, not a torch file...
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first_line}") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint")
    try:
        meta = json.loads(payload["meta_json"])
        state = payload["state_dict"]
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} is damaged: {e}") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} holds no state dict of tensors")
    return state, meta


def build_from_checkpoint(path: str | os.PathLike, map_location="cpu", return_meta: bool = False):
    """Rebuild the network described by a checkpoint and load its weights (eval mode).

    Returns the model, or ``(model, meta)`` with ``return_meta=True``.

    Args:
        path: the file written by ``save_checkpoint``.
        map_location: device of the loaded tensors; the model is moved there too.
        return_meta: also return the checkpoint's metadata.
    """
    state, meta = load_checkpoint(path, map_location)
    kind, config = meta.get("network"), meta.get("config")
    if kind not in NETWORKS or not isinstance(config, dict):
        raise CheckpointError(f"checkpoint {path} does not say which network it holds")
    try:
        model = NETWORKS[kind](**config)
        model.load_state_dict(state, strict=True)
    except (TypeError, ValueError, RuntimeError) as e:
        first_line = str(e).strip().splitlines()[0]
        raise CheckpointError(
            f"checkpoint {path} does not fit a {kind} {config}: {first_line}") from e
    try:
        attach(model, meta)  # predictions undo the training loss's class weights (lib.networks.logit_adjustment)
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path}: {e}") from e
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    model.eval()
    return (model, meta) if return_meta else model


# Meta entries that must agree between the members of an ensemble: what they segment, at which size.
ENSEMBLE_SHARED_META = ("name", "region", "preset")


def save_ensemble(path: str | os.PathLike, member_paths, meta: dict | None = None,
                  storage_dtype: torch.dtype | None = torch.float16) -> Path:
    """Join segmenter checkpoints of one region into one ensemble checkpoint
    (``lib.networks.ensemble``); returns the path.

    The ensemble's meta is the first member's shared entries (``ENSEMBLE_SHARED_META``), each
    member's class weights (``member_class_weights``: every member keeps its own logit
    adjustment), a short record of each member, and ``meta``.

    Args:
        path: destination file, written atomically.
        member_paths: two or more segmenter checkpoints (``"network": "segmenter"``) that agree
            on ``ENSEMBLE_SHARED_META``.
        meta: more JSON-able entries (how the ensemble was made).
        storage_dtype: as ``save_checkpoint``; float16 as the shipped weights.
    """
    member_paths = [Path(p) for p in member_paths]
    if len(member_paths) < 2:
        raise UserError(f"an ensemble needs at least two member checkpoints, got {len(member_paths)}")
    members, metas = [], []
    for member_path in member_paths:
        model, member_meta = build_from_checkpoint(member_path, return_meta=True)
        if member_meta.get("network") != "segmenter":
            raise UserError(f"{member_path} holds a {member_meta.get('network')}, not a segmenter")
        members.append(model)
        metas.append(member_meta)
    for key in ENSEMBLE_SHARED_META:
        values = {json.dumps(m.get(key)) for m in metas}
        if len(values) > 1:
            raise UserError(f"ensemble members disagree on {key!r}: {', '.join(sorted(values))}")
    ensemble = SoftmaxEnsemble([m.config for m in members])
    for target, member in zip(ensemble.members, members):
        target.load_state_dict(member.state_dict())
    record = [{k: m[k] for k in ("source", "sources", "validation_score", "class_weights") if k in m}
              for m in metas]
    ensemble_meta = {**{k: metas[0][k] for k in ENSEMBLE_SHARED_META if k in metas[0]},
                     "member_class_weights": [m.get("class_weights") for m in metas],
                     "members": record, **(meta or {})}
    return save_checkpoint(path, ensemble, ensemble_meta, storage_dtype=storage_dtype)


def save_ensemble_members(ensemble_path: str | os.PathLike, member_path,
                          storage_dtype: torch.dtype | None = torch.float16) -> list[Path]:
    """Write each member of an ensemble checkpoint as a segmenter checkpoint of its own, with its
    class weights, so that ``pretrain --init-from`` can continue it; returns the paths written.

    Args:
        ensemble_path: a checkpoint written by ``save_ensemble`` (read once).
        member_path: ``index -> path`` (index from 0) of each member's file, written atomically.
        storage_dtype: as ``save_checkpoint``.
    """
    ensemble, meta = build_from_checkpoint(ensemble_path, return_meta=True)
    if meta.get("network") != "ensemble":
        raise UserError(f"{ensemble_path} holds a {meta.get('network')}, not an ensemble")
    records = meta.get("members") or [{}] * len(ensemble.members)
    shared = {k: meta[k] for k in ENSEMBLE_SHARED_META if k in meta}
    return [save_checkpoint(member_path(index), member,
                            {**shared, **records[index], "class_weights": meta["member_class_weights"][index]},
                            storage_dtype=storage_dtype)
            for index, member in enumerate(ensemble.members)]


def interpolated_state(first: dict, second: dict, share: float) -> dict:
    """``(1 - share) * first + share * second`` for every floating-point tensor of two state dicts
    of one network (weights and batch-norm statistics); integer buffers (batch counts) are not
    weights: the first's are kept."""
    return {k: torch.lerp(v.float(), second[k].float(), share).to(v.dtype) if v.is_floating_point() else v
            for k, v in first.items()}


def interpolated_class_weights(first, second, share: float) -> list[float]:
    """Class weights between two networks', geometrically, so that their logit adjustments
    (``lib.networks.logit_adjustment``: ``-tau * log(weight)``) interpolate as the weights do; a
    weight of 0 (a class absent from the data, offset 0) counts as 1."""
    a, b = (torch.tensor(w, dtype=torch.float64) for w in (first, second))
    a, b = torch.where(a > 0, a, 1.0), torch.where(b > 0, b, 1.0)
    return [round(float(w), 4) for w in a ** (1 - share) * b ** share]


def save_interpolation(path: str | os.PathLike, first_path: str | os.PathLike, second_path: str | os.PathLike,
                       share: float, meta: dict | None = None,
                       storage_dtype: torch.dtype | None = torch.float16) -> Path:
    """One segmenter whose weights lie ``share`` of the way from the first checkpoint's to the
    second's, ``(1 - share) * first + share * second``, batch-norm statistics included; returns
    the path.

    Wortsman et al., "Robust fine-tuning of zero-shot models" (WiSE-FT, CVPR 2022): when the
    second network was fine-tuned from the first, the weights between them stay in one basin,
    and the interpolation keeps most of what each one is good at (there, accuracy on the fine-tuning
    distribution and robustness under shift) at the cost of one network. The shipped thigh
    segmenter is such an interpolation: the first, the thigh trained on the phantoms' own
    contrast; the second, its continuation on randomised contrast (docs/REAL_MRI.md).

    The class weights interpolate geometrically (``interpolated_class_weights``).

    Args:
        path: destination file, written atomically.
        first_path, second_path: segmenter checkpoints of the same network (same config, same
            ``ENSEMBLE_SHARED_META``); the second usually continued from the first.
        share: in [0, 1]; 0 gives the first, 1 the second.
        meta: more JSON-able entries (how it was made).
        storage_dtype: as ``save_checkpoint``; float16 as the shipped weights.
    """
    if not 0.0 <= share <= 1.0:
        raise UserError(f"the interpolation share must be in [0, 1], got {share}")
    models, metas = [], []
    for member_path in (first_path, second_path):
        model, member_meta = build_from_checkpoint(member_path, return_meta=True)
        if member_meta.get("network") != "segmenter":
            raise UserError(f"{member_path} holds a {member_meta.get('network')}, not a segmenter")
        models.append(model)
        metas.append(member_meta)
    if metas[0]["config"] != metas[1]["config"]:
        raise UserError(f"cannot interpolate different networks: {metas[0]['config']} and {metas[1]['config']}")
    for key in ENSEMBLE_SHARED_META:
        if metas[0].get(key) != metas[1].get(key):
            raise UserError(f"the two networks disagree on {key!r}: {metas[0].get(key)!r} and {metas[1].get(key)!r}")
    weights = [m.get("class_weights") for m in metas]
    if (weights[0] is None) != (weights[1] is None):
        raise UserError("one of the two networks carries class weights and the other does not: "
                        "their predictions are not on one scale")
    models[0].load_state_dict(interpolated_state(models[0].state_dict(), models[1].state_dict(), share))
    own = {k: v for k, v in metas[1].items() if k not in ("network", "config")}
    if weights[0] is not None:
        own["class_weights"] = interpolated_class_weights(weights[0], weights[1], share)
    # Each end's validation score was measured on that end, not on the interpolation: kept beside it.
    ends = [{k: m[k] for k in ("source", "validation_score", "version") if k in m} for m in metas]
    own.pop("validation_score", None)
    own["interpolation"] = {"share": share, "first": ends[0], "second": ends[1]}
    return save_checkpoint(path, models[0], {**own, **(meta or {})}, storage_dtype=storage_dtype)
