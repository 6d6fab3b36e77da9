"""What the muscle infer tasks share on top of MONAI Label's ``BasicInferTask``.

- request options validated up front (a wrong value is a 4xx, not a crash mid-way);
- our safe checkpoints, loaded once and reloaded when training publishes a new file;
- the pre-processing of ``lib.transforms.preprocess`` (model grid, robust normalisation);
- a lean NIfTI writer: MONAI Label's stock writer took 5.6 s of a 6.6 s inference here.
"""

from __future__ import annotations

import logging
import tempfile

import nibabel as nib
import numpy as np
from monailabel.tasks.infer.basic_infer import BasicInferTask

from lib.errors import NotFoundError, UserError
from lib.labels import REGIONS, SIDE_OFFSET, channels_to_global
from lib.models.cache import live_network
from lib.models.catalog import CLASSIFIER, segmenter_name
from lib.models.store import live_path
from lib.options import parse_bool, parse_slices
from lib.tasks.slice_engine import classify_slices, resolve_device, segment_slices
from lib.transforms.cleanup import KeepLargestPerLimbd, LabelCleanupd
from lib.transforms.geometry import FromModelGridd
from lib.transforms.postprocess import MeasureMusclesd, SplitSidesd
from lib.transforms.preprocess import CLASSIFIER_KEY, inference_transforms

logger = logging.getLogger(__name__)

# Our request options, with their defaults: shown in /info and documented in the README.
OPTIONS = {
    "region": "auto",  # "auto" (classifier decides), "thigh" or "leg"
    "slices": None,  # list of slice indices (along the axial axis) to process; None = all
    "split_sides": False,  # per-side labels: <muscle>_right / <muscle>_left
    "echo": 0,  # which volume of a 4D (multi-echo) series to use
    "cleanup": True,  # SPEC §2 area opening/closing of the predicted labels
    "keep_largest": False,  # per slice, each muscle keeps its largest region per limb, holes filled
    "region_window": 5,  # odd number of consecutive slices whose majority routes a slice; 1: each on its own
}


def parse_window(value) -> int:
    """``region_window``: a positive odd integer (a median needs a middle)."""
    try:
        window = int(value)
    except (TypeError, ValueError):
        window = 0
    if window < 1 or window % 2 == 0 or str(value).strip() != str(window):
        raise UserError(f"option 'region_window' must be a positive odd integer (1 = no smoothing), got {value!r}")
    return window


class MuscleInferTask(BasicInferTask):
    """Base of the classifier, segmenter and routed-pipeline infer tasks.

    Args:
        paths: weight files per network name, each ``[shipped, live]`` (the last existing wins).
        type, labels, description: as MONAI Label's ``BasicInferTask``.
    """

    def __init__(self, paths: dict[str, list[str]], type, labels, description: str):
        self.paths = paths
        config = {k: v for k, v in OPTIONS.items() if v is not None}
        config["result_extension"] = ".nii.gz"
        super().__init__(path=None, network=None, type=type, labels=labels, dimension=3,
                         description=description, config=config)

    def is_valid(self) -> bool:
        """Listed in /info only when every network it needs has weights."""
        return all(live_path(p) for p in self.paths.values())

    def __call__(self, request, callbacks=None):
        request = dict(request)
        image = request.get("image")
        if isinstance(image, str) and not image:
            raise NotFoundError("unknown image: no such image id in the datastore")
        request["device"] = resolve_device(request.get("device"))
        region = str(request.get("region", "auto")).lower()
        if region not in ("auto", *REGIONS):
            raise UserError(f"option 'region' must be one of auto, {', '.join(REGIONS)}; got {region!r}")
        request["region"] = region
        request["slices"] = parse_slices(request.get("slices"))
        request["split_sides"] = parse_bool(request.get("split_sides", False), "split_sides")
        request["cleanup"] = parse_bool(request.get("cleanup", True), "cleanup")
        request["keep_largest"] = parse_bool(request.get("keep_largest", False), "keep_largest")
        try:
            request["echo"] = int(request.get("echo", 0))
        except (TypeError, ValueError):
            raise UserError(f"option 'echo' must be an integer, got {request.get('echo')!r}") from None
        request["region_window"] = parse_window(request.get("region_window", OPTIONS["region_window"]))
        return super().__call__(request, callbacks)

    def pre_transforms(self, data=None):
        return inference_transforms(echo=data.get("echo", 0) if data else 0)

    def post_transforms(self, data=None):
        return []

    def selected_slices(self, data, n_slices: int) -> list[int]:
        """The requested slice indices, checked against the volume (4xx when outside)."""
        slices = data.get("slices")
        if slices is None:
            return list(range(n_slices))
        bad = [k for k in slices if not 0 <= k < n_slices]
        if bad:
            raise UserError(f"slice indices {bad} are outside the volume (0..{n_slices - 1})")
        return slices

    def classify(self, data, slices: list[int], device: str) -> np.ndarray:
        """Thigh/leg probabilities (len(slices), 2) of the classifier on the chosen slices."""
        small = data[CLASSIFIER_KEY][0].permute(2, 0, 1)[:, None]  # (Z, 1, 128, 128)
        return classify_slices(live_network(self.paths, CLASSIFIER, device), small[slices])

    def segment(self, data, slices: list[int], region: str, device: str, out: np.ndarray) -> None:
        """Write the global labels of ``region``'s segmenter on ``slices`` into ``out`` (X, Y, Z)."""
        if not slices:
            return
        images = data["image"][0].permute(2, 0, 1)[:, None]  # (Z, 1, 432, 432)
        channels = segment_slices(live_network(self.paths, segmenter_name(region), device), images[slices])
        out[:, :, slices] = np.moveaxis(channels_to_global(channels, region), 0, -1)

    def label_post_transforms(self, data, names: dict[str, int]) -> list:
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

    def writer(self, data, extension=None, dtype=None):
        """Write ``pred`` (X, Y, Z) on the input's affine; return (path, result JSON)."""
        result = dict(data.get("result", {}))
        label = np.asarray(data["pred"])[0].astype(np.uint8)
        ext = data.get("result_extension") or ".nii.gz"
        path = tempfile.NamedTemporaryFile(suffix=ext, delete=False).name
        if ext in (".nii", ".nii.gz"):
            img = nib.Nifti1Image(label, np.asarray(data["image_original"].affine))
            img.header.set_data_dtype(np.uint8)
            img.set_qform(img.affine, code=1)
            img.set_sform(img.affine, code=1)
            nib.save(img, path)
        else:  # .nrrd and friends, as Slicer may ask: MONAI Label's ITK writer
            from monailabel.transform.writer import write_itk

            write_itk(label, path, np.asarray(data["image_original"].affine), np.uint8, False)
        return path, result
