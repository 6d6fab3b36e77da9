"""Phantom studies on disk, and the embedded default datastore ``studies/``.

Layout (MONAI Label local datastore): ``<dir>/<id>.nii.gz`` images and, for annotated
studies, ``<dir>/labels/final/<id>.nii.gz`` labels, where unannotated slices are 0 (SPEC §2:
sparse annotation). ``studies/`` holds a few small phantoms of both regions, with two
in-plane spacings, non-square grids and all severities, two of them (one thigh, one leg)
sparsely labelled, plus real MRI with its licence notices: the labelled leg slice and two
unlabelled real volumes (a Dixon thigh and a T2 calf, copied byte for byte from the shared
data, for a first look at real contrast and for region checks). It is rebuilt deterministically
by ``python main.py generate --embedded``; only stale ``phantom_*`` files are removed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from lib.data.io import save_nifti
from lib.data.phantoms.phantom import Phantom, annotated_slices, generate_phantom, sparse_label
from lib.data.phantoms.real_slice import STUDY_ID, load_real_slice
from lib.errors import UserError
from lib.paths import EMBEDDED_STUDIES, SHARED_DATA

LABELS_SUBDIR = Path("labels") / "final"
ANNOTATIONS = ("sparse", "all", "none")
NOTICE_FILE = "REAL_DATA_NOTICE.md"
REAL_VOLUMES_DIR = "real_volumes"  # in the shared data folder
# embedded id -> file in <shared data>/real_volumes (unlabelled real scans, MIT, SWastling/musclemap)
REAL_VOLUMES = {
    "real_thigh_dixon": "musclemap_dixon_thigh.nii.gz",
    "real_calf_t2": "musclemap_t2_calf.nii.gz",
}
REAL_VOLUMES_LICENSE = "LICENSE-musclemap.txt"


@dataclass(frozen=True)
class StudySpec:
    """One phantom study: generate_phantom arguments plus how it is annotated."""

    region: str
    seed: int
    severity: str
    n_slices: int
    shape: tuple[int, int]
    spacing: tuple[float, float, float]
    annotate: str = "none"

    @property
    def id(self) -> str:
        return study_id(self.region, self.seed, self.severity)


EMBEDDED = (
    StudySpec("thigh", 1, "mild", 12, (320, 224), (1.3, 1.3, 5.0), "sparse"),
    StudySpec("thigh", 2, "healthy", 10, (384, 256), (1.04, 1.04, 5.0)),
    StudySpec("leg", 3, "severe", 10, (288, 192), (1.04, 1.04, 5.0), "sparse"),
    StudySpec("leg", 4, "healthy", 12, (224, 160), (1.3, 1.3, 5.0)),
)


def study_id(region: str, seed: int, severity: str) -> str:
    """Datastore id of a phantom, e.g. ``phantom_thigh_s0003_mild``."""
    return f"phantom_{region}_s{int(seed):04d}_{severity}"


def write_study(folder, spec: StudySpec, phantom: Phantom | None = None) -> list[Path]:
    """Generate (unless given) and write one phantom study; returns the written paths."""
    folder = Path(folder)
    if phantom is None:
        phantom = generate_phantom(spec.region, spec.seed, spec.n_slices, spec.severity,
                                   spec.shape, spec.spacing)
    written = [save_nifti(folder / f"{spec.id}.nii.gz", phantom.image, phantom.affine)]
    if spec.annotate != "none":
        label = phantom.label
        if spec.annotate == "sparse":
            label = sparse_label(label, annotated_slices(label.shape[2], spec.region))
        written.append(save_nifti(folder / LABELS_SUBDIR / f"{spec.id}.nii.gz", label, phantom.affine))
    return written


def write_real_slice(folder, source=SHARED_DATA) -> list[Path]:
    """The real leg slice as ``real_leg_t1`` with its label, and its attribution notice."""
    folder = Path(folder)
    real = load_real_slice(source)
    written = [save_nifti(folder / f"{STUDY_ID}.nii.gz", real.image, real.affine),
               save_nifti(folder / LABELS_SUBDIR / f"{STUDY_ID}.nii.gz", real.label, real.affine)]
    notice = folder / NOTICE_FILE
    notice.write_text(REAL_DATA_NOTICE)
    return written + [notice]


def write_real_volumes(folder, source=SHARED_DATA) -> list[Path]:
    """The unlabelled real volumes of ``REAL_VOLUMES`` (byte copies: their own headers, int16)
    and their licence file; the notice that names them is ``write_real_slice``'s."""
    folder = Path(folder)
    origin = Path(source) / REAL_VOLUMES_DIR
    needed = [*REAL_VOLUMES.values(), REAL_VOLUMES_LICENSE]
    missing = [name for name in needed if not (origin / name).is_file()]
    if missing:
        raise UserError(f"real volumes missing in {origin}: {', '.join(missing)}")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for study, name in REAL_VOLUMES.items():
        written.append(Path(shutil.copyfile(origin / name, folder / f"{study}.nii.gz")))
    written.append(Path(shutil.copyfile(origin / REAL_VOLUMES_LICENSE, folder / REAL_VOLUMES_LICENSE)))
    return written


def build_embedded(folder=EMBEDDED_STUDIES, source=SHARED_DATA) -> list[Path]:
    """(Re)build the embedded datastore; stale ``phantom_*`` files of older builds are removed,
    the real studies (``real_*``) are written again, never removed."""
    folder = Path(folder)
    written = []
    for spec in EMBEDDED:
        written += write_study(folder, spec)
    written += write_real_slice(folder, source)
    written += write_real_volumes(folder, source)
    for stale in [*folder.glob("phantom_*.nii.gz"), *(folder / LABELS_SUBDIR).glob("phantom_*.nii.gz")]:
        if stale not in written:
            stale.unlink()
    return written


REAL_DATA_NOTICE = """\
# Real data notice

## Real leg slice with labels

`real_leg_t1.nii.gz` and `labels/final/real_leg_t1.nii.gz` are one real axial T1-weighted MRI
slice through both lower legs and its 12 manual muscle ROIs (6 leg muscles, right and left),
converted to NIfTI by `lib/data/phantoms/real_slice.py` (LPS orientation, global label values of
`lib/labels.py`; where two ROIs overlap, the smaller ROI wins).

Source: the public repository
[dafne-imaging/dafne-evaluation](https://github.com/dafne-imaging/dafne-evaluation),
folder `image_data/` (files `t1_example.npz` and `t1_manual_rois.npz`), commit 5f5d824b,
licensed under the Apache License, Version 2.0
(<https://www.apache.org/licenses/LICENSE-2.0>).
Copyright of the data remains with its authors (the Dafne project).

Any copy or redistribution of these files must keep this attribution and licence notice.
Licensed under the Apache License, Version 2.0; the files are distributed on an "AS IS"
BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.

## Real volumes without labels

`real_thigh_dixon.nii.gz` (both thighs, Siemens Dixon, first-echo magnitude, TE 3.45 ms,
512x256x10 at 0.8x0.8x20 mm; the last slice is near the gluteal fold) and `real_calf_t2.nii.gz`
(both calves, T2-weighted spin echo, TE 16 ms, 256x120x10 at 1.56x1.56x20 mm) are real MRI
volumes without muscle labels, copied unchanged.

Source: the public repository [SWastling/musclemap](https://github.com/SWastling/musclemap),
files `tests/test_data/ff/siemens/thigh/input/0006-Dixon_TE_345_th.nii.gz` and
`tests/test_data/t2/input/t2_te16ms.nii.gz`, commit bb20bfe5, licensed under the MIT License,
Copyright (c) 2025 Stephen Wastling. The full licence text is in `LICENSE-musclemap.txt` in
this folder; any copy or redistribution of these two files must keep it beside them.

## Synthetic studies

The studies named `phantom_*` are synthetic, generated by `python main.py generate --embedded`;
the studies named `real_*` are the real MRI above.
"""
