"""One volume through the networks, step by step: what an infer request and an evaluation run.

A volume goes: pre-processing to the model grid (``lib.transforms.preprocess``) → the limbs of
each chosen slice (``lib.inference.limbs``) → the classifier on each limb, one region split for
the whole volume (``lib.inference.regions``) → each region's segmenter on each limb's crop of its
slices, labels pasted back inside the limb (``lib.inference.batching``), none left on bone
(``lib.inference.bone``) → post-processing: clean-up on the model grid, back to the input's own
grid, sides, measurements → a label file.

The steps read and write MONAI-style data dicts, so that MONAI Label's ``BasicInferTask`` runs
them as its pre-transforms, inferer, post-transforms and writer (``lib.tasks``), and
``segment_muscles_in`` runs the same steps without a server (evaluation, benchmarks). Networks
come from the model store by their candidates (``paths``: network -> ``[shipped, live]``).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch

from lib.errors import UserError
from lib.inference.batching import classify_limbs, classify_slices, resolve_device, segment_limbs
from lib.inference.bone import clear_bone
from lib.inference.limbs import Limb, faded_end_slices, find_limbs
from lib.inference.measurements import MeasureMusclesd
from lib.inference.regions import region_summary, route
from lib.labels import SIDE_OFFSET, all_labels, channels_to_global
from lib.models.cache import live_network, live_network_and_meta
from lib.models.catalog import CLASSIFIER, segmenter_name
from lib.options import parse_slices
from lib.transforms.cleanup import KeepLargestPerLimbd, LabelCleanupd
from lib.transforms.geometry import FromModelGridd
from lib.transforms.postprocess import SplitSidesd
from lib.transforms.intensity import classifier_input
from lib.transforms.preprocess import inference_transforms

# The request options, with their defaults: shown in /info and documented in the README.
OPTIONS = {
    "region": "auto",  # "auto" (classifier decides), "thigh" or "leg"
    "slices": None,  # list of slice indices (along the axial axis) to process; None = all
    "split_sides": False,  # per-side labels: <muscle>_right / <muscle>_left
    "echo": 0,  # which volume of a 4D (multi-echo) series to use
    "cleanup": True,  # SPEC §2 area opening/closing of the predicted labels
    "keep_largest": False,  # per slice, each muscle keeps its largest region per limb, holes filled
    "clear_bone": True,  # muscle labels inside a bone (marrow in a signal-void cortex) become background
    "skip_faded_ends": True,  # a slab's faded end slices get no labels (lib.inference.limbs.faded_end_slices)
}


def selected_slices(data, n_slices: int) -> list[int]:
    """The requested slice indices, checked against the volume (4xx when outside)."""
    slices = data.get("slices")
    if slices is None:
        return list(range(n_slices))
    bad = [k for k in slices if not 0 <= k < n_slices]
    if bad:
        raise UserError(f"slice indices {bad} are outside the volume (0..{n_slices - 1})")
    return slices


def faded_slices(data) -> list[int]:
    """The model-grid image's faded end slices (none when ``skip_faded_ends`` is off), found once."""
    if "faded_slices" not in data:
        skip = data.get("skip_faded_ends", True)
        data["faded_slices"] = faded_end_slices(np.asarray(data["image"][0])) if skip else []
    return data["faded_slices"]


def limbs_of(data, slices: list[int]) -> list[list[Limb]]:
    """The limbs of each chosen slice of the model-grid image, found once per request."""
    known = data.setdefault("limbs", {})
    missing = [k for k in slices if k not in known]
    if missing:
        known.update(zip(missing, find_limbs(np.asarray(data["image"][0]), missing)))
    return [known[k] for k in slices]


def faded_in(data, slices: list[int]) -> list[int]:
    """The chosen slices that are faded ends, for the answer."""
    chosen = set(slices)
    return [k for k in faded_slices(data) if k in chosen]


def classify(data, paths, slices: list[int], device: str) -> np.ndarray:
    """P(thigh) of each chosen slice (``nan`` where it holds no limb).

    A classifier made for limb crops (checkpoint meta ``input: limb``) sees each limb; one made
    before them sees the whole slice downsized to 128 x 128 (SPEC §3)."""
    model, meta = live_network_and_meta(paths, CLASSIFIER, device)
    limbs = limbs_of(data, slices)
    if meta.get("input") == "limb":
        return classify_limbs(model, np.asarray(data["image"][0]), slices, limbs)
    small = classifier_input(data["image"])[0].permute(2, 0, 1)[:, None]  # (Z, 1, 128, 128)
    p_thigh = classify_slices(model, small[slices])[:, 0].astype(np.float64)
    return np.where([bool(found) for found in limbs], p_thigh, np.nan)


def segment(data, paths, slices: list[int], region: str, device: str, out: np.ndarray) -> None:
    """Write the global labels of ``region``'s segmenter on each limb of ``slices`` into ``out``
    (X, Y, Z); a slab's faded end slices get none. They still count in the volume's region split:
    their anatomy is dim, not absent."""
    faded = set(faded_slices(data))
    slices = [k for k in slices if k not in faded]
    if not slices:
        return
    model = live_network(paths, segmenter_name(region), device)
    volume, limbs = np.asarray(data["image"][0]), limbs_of(data, slices)
    channels = segment_limbs(model, volume, slices, limbs)
    if data.get("clear_bone", True):
        clear_bone(channels, volume, slices, limbs)
    out[:, :, slices] = channels_to_global(channels, region)


def classify_regions(data, paths, device: str) -> dict:
    """``result``: the region of every chosen slice and the volume's (``classifier``)."""
    slices = selected_slices(data, data["image"].shape[-1])
    data["result"] = {**region_summary(classify(data, paths, slices, device), slices),
                      "faded_slices": faded_in(data, slices)}
    return data


def segment_region(data, paths, region: str, device: str) -> dict:
    """``pred``: one region's segmenter on every chosen slice (``segmentation_<region>``)."""
    n_slices = data["image"].shape[-1]
    slices = selected_slices(data, n_slices)
    grid = np.zeros((*data["image"].shape[1:3], n_slices), np.uint8)
    segment(data, paths, slices, region, device, grid)
    data["pred"] = torch.from_numpy(grid)[None]
    data["result"] = {"region": region, "slices": slices, "faded_slices": faded_in(data, slices)}
    return data


def segment_muscles(data, paths, device: str) -> dict:
    """``pred``: the routed pipeline (``muscle``), each slice through its region's segmenter; one
    label map with thigh (1-12) and leg (13-18) muscles, so a volume through the knee holds both
    (leg below the split, thigh above)."""
    n_slices = data["image"].shape[-1]
    slices = selected_slices(data, n_slices)
    region = data.get("region", "auto")
    p_thigh = classify(data, paths, slices, device) if region == "auto" else None
    summary, routed = route(slices, region, p_thigh)
    grid = np.zeros((*data["image"].shape[1:3], n_slices), np.uint8)
    for chosen_region, chosen in routed.items():
        segment(data, paths, chosen, chosen_region, device, grid)
    data["pred"] = torch.from_numpy(grid)[None]
    data["result"] = {"classification": summary, "routed_slices": routed, "faded_slices": faded_in(data, slices)}
    return data


def label_post_transforms(data, names: dict[str, int]) -> list:
    """Model-grid ``pred`` -> cleaned, restored to the input grid, side-split, measured."""
    steps = [LabelCleanupd("pred")] if data.get("cleanup", True) else []
    if data.get("keep_largest"):
        steps.append(KeepLargestPerLimbd("pred"))
    steps.append(FromModelGridd("pred", ref_key="image", mode="nearest"))
    if data.get("split_sides"):
        steps.append(SplitSidesd("pred"))
        names = {**names, **{f"{k}_right": v for k, v in names.items()},
                 **{f"{k}_left": v + SIDE_OFFSET for k, v in names.items()}}
    steps.append(MeasureMusclesd("pred", names=names))
    return steps


def label_volume(data) -> tuple[np.ndarray, np.ndarray]:
    """The answer's label (X, Y, Z) uint8 on the input's grid, and the input's affine."""
    return np.asarray(data["pred"])[0].astype(np.uint8), np.asarray(data["image_original"].affine)


def save_label_nifti(path, label: np.ndarray, affine: np.ndarray) -> None:
    """A uint8 NIfTI label with qform and sform both set to ``affine`` (viewers read either)."""
    img = nib.Nifti1Image(label, affine)
    img.header.set_data_dtype(np.uint8)
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    nib.save(img, path)


def segment_muscles_in(image: str, paths, slices=None, device: str = "cpu") -> dict:
    """The ``muscle`` answer for one image file without a server, as ``POST /infer/muscle`` with
    the default options gives it: the data dict with ``pred`` on the input grid and ``result``."""
    data = {**OPTIONS, "image": image, "slices": parse_slices(slices)}
    device = resolve_device(device)
    for step in inference_transforms(echo=data["echo"]):
        data = step(data)
    data = segment_muscles(data, paths, device)
    for step in label_post_transforms(data, all_labels()):
        data = step(data)
    return data
