"""Self-training on unlabelled real scans: a segmenter learns from its own or its teachers' labels
of real images.

The segmenters learn muscle from label maps rendered with random contrast (``lib.training.sources``),
whose anatomy and texture only imitate real scans. The unlabelled real volumes of the shared data
(``lib.data.real_volumes``) show both. After its stages, a segmenter labels the certain slices of
its region in those volumes as inference serves them (limbs found, one crop per limb, bone cleared),
and further stages train it on those pseudo-labels in the real images, mixed with the rendered
sources. The teacher may instead be the softmax average of several segmenters (other seeds, joined
as a ``lib.networks.ensemble``), which scores above each of them on the held-out real slice. The
real images are deformed, gamma-jittered and mirrored as every crop is, so the student sees harder
inputs than the teacher did, as in Noisy Student (Xie et al., CVPR 2020); the rendered sources keep
the phantoms' anatomy. The pseudo-labels never enter validation: model selection stays on phantom
validation subjects, and the held-out real slice is never among them. README ("Self-training on the
real volumes"): no gain beyond the spread between runs yet, so ``pretrain`` leaves it off by
default.
"""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
from torch import nn

from lib.data.phantoms.layout import MUSCLE
from lib.data.phantoms.shapes import LabelSlices
from lib.data.real_volumes import z_points_to_head
from lib.inference.batching import segment_limbs
from lib.inference.bone import clear_bone
from lib.inference.limbs import find_limbs
from lib.labels import channels_to_global
from lib.networks.ensemble import SoftmaxEnsemble
from lib.networks.fast import prepare_for_inference
from lib.transforms.preprocess import volume_to_model_grid
from lib.transforms.weights import IGNORE_VALUE

logger = logging.getLogger(__name__)
MIN_AGREEMENT = 0.8  # of six teachers, five must agree; the border pixels they dispute are skipped


def pseudo_labelled_slices(teachers: list[nn.Module], region: str, volumes: dict[Path, list[int]],
                           min_agreement: float = MIN_AGREEMENT) -> LabelSlices | None:
    """The chosen slices of ``volumes`` on the model grid, labelled as inference labels them by one
    segmenter or the softmax average of several (``teachers``), drawn only in their own images
    (``own_image_only``: their tissue map marks muscle alone, enough to find the limbs' centres,
    not to render them). None when no volume can be used.

    volumes: {NIfTI file: slice indices of ``region``}; a file whose z does not point to the head
    is skipped, since its slice numbers are not the model grid's.
    min_agreement: with several teachers, a pixel on whose label fewer than this share of them
    agree is unknown (255), so the loss skips it rather than learn the teachers' doubt."""
    members = [prepare_for_inference(t, next(t.parameters()).device) for t in teachers]
    average = members[0] if len(members) == 1 else SoftmaxEnsemble(members)
    average.inference_precision = members[0].inference_precision  # members run in the precision they were prepared for
    images, labels, names = [], [], []
    for path, slices in volumes.items():
        if not z_points_to_head(path):
            logger.warning("%s: z does not point to the head; left out of self-training", path.name)
            continue
        nifti = nib.load(path)
        image = volume_to_model_grid(np.asarray(nifti.dataobj, np.float32), None, nifti.affine)[0]
        slices = [k for k in slices if 0 <= k < image.shape[2]]
        limbs = find_limbs(image, slices)
        channels = segment_limbs(average, image, slices, limbs)
        doubtful = np.zeros(channels.shape, bool)
        if len(members) > 1:
            agreeing = sum((segment_limbs(m, image, slices, limbs) == channels).astype(np.int16) for m in members)
            doubtful = agreeing < min_agreement * len(members) - 1e-9
        labelled = channels > 0
        clear_bone(channels, image, slices, limbs)
        label = channels_to_global(channels, region)
        label[doubtful & ~(labelled & (channels == 0))] = IGNORE_VALUE  # cleared bone stays background
        for j, k in enumerate(slices):
            if label[:, :, j].any():
                images.append(image[:, :, k])
                labels.append(label[:, :, j])
                names.append(f"{path.name.removesuffix('.nii.gz')}:{k}")
    if not images:
        return None
    label = np.stack(labels).astype(np.uint8)
    tissue = np.where((label > 0) & (label != IGNORE_VALUE), MUSCLE, 0).astype(np.uint8)
    return LabelSlices(tissue, label, region, names, np.stack(images).astype(np.float32), own_image_only=True)
