"""What the muscle infer tasks share on top of MONAI Label's ``BasicInferTask``.

The tasks turn a request into calls of the inference engine (``lib.inference.pipeline``):

- request options validated up front (a wrong value is a 4xx, not a crash mid-way);
- the engine's steps as MONAI Label's pre-transforms, inferer, post-transforms and writer;
- a lean NIfTI writer: MONAI Label's stock writer took 5.6 s of a 6.6 s inference here.
"""

from __future__ import annotations

import logging
import tempfile

import numpy as np
from monailabel.tasks.infer.basic_infer import BasicInferTask

from lib.errors import NotFoundError, UserError
from lib.inference.batching import resolve_device
from lib.inference.pipeline import OPTIONS, label_volume, save_label_nifti
from lib.labels import REGIONS
from lib.models.store import has_weights
from lib.options import parse_bool, parse_slices
from lib.transforms.preprocess import inference_transforms

logger = logging.getLogger(__name__)


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
        return has_weights(self.paths)

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
        request["clear_bone"] = parse_bool(request.get("clear_bone", True), "clear_bone")
        request["skip_faded_ends"] = parse_bool(request.get("skip_faded_ends", True), "skip_faded_ends")
        try:
            request["echo"] = int(request.get("echo", 0))
        except (TypeError, ValueError):
            raise UserError(f"option 'echo' must be an integer, got {request.get('echo')!r}") from None
        return super().__call__(request, callbacks)

    def pre_transforms(self, data=None):
        return inference_transforms(echo=data.get("echo", 0) if data else 0)

    def post_transforms(self, data=None):
        return []

    def run_post_transforms(self, data, transforms):
        """MONAI Label's post-transforms, then, for a DICOM folder, which of its images were read
        (``volume``, ``lib.transforms.loading``) into the answer, as the PACS path's image info says."""
        data = super().run_post_transforms(data, transforms)
        volume = getattr(data.get("image_original"), "meta", {}).get("volume")
        if volume and isinstance(data.get("result"), dict):
            data["result"]["volume"] = volume
        return data

    def writer(self, data, extension=None, dtype=None):
        """Write ``pred`` (X, Y, Z) on the input's affine; return (path, result JSON)."""
        result = dict(data.get("result", {}))
        label, affine = label_volume(data)
        ext = data.get("result_extension") or ".nii.gz"
        path = tempfile.NamedTemporaryFile(suffix=ext, delete=False).name
        if ext in (".nii", ".nii.gz"):
            save_label_nifti(path, label, affine)
        else:  # .nrrd and friends, as Slicer may ask: MONAI Label's ITK writer
            from monailabel.transform.writer import write_itk

            write_itk(label, path, affine, np.uint8, False)
        return path, result
