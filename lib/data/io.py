"""NIfTI reading and writing for studies, labels and phantoms.

Writes are atomic (``lib.files``), so a server scanning the folder never sees a half-written
file, and byte-for-byte reproducible (``.nii.gz`` is compressed with a zero gzip timestamp), so
regenerated committed studies do not show up as changes. Float images are stored as int16 with a scale factor (``scl_slope``),
which keeps files small at a precision far below MR noise; labels keep their integer type.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np

from lib.files import write_bytes_atomic

INT16_MAX = 32000  # largest stored magnitude of a scaled float image


def save_nifti(path, array: np.ndarray, affine: np.ndarray, dtype=None) -> Path:
    """Write ``array`` with ``affine`` to ``path`` (``.nii`` or ``.nii.gz``) atomically.

    dtype: on-disk type. ``None`` picks int16 + ``scl_slope`` for floating-point arrays and
    keeps integer arrays as they are; an explicit float type stores floats unscaled.
    """
    path = Path(path)
    array = np.asarray(array)
    dtype = np.dtype(dtype) if dtype is not None else None
    slope = None
    if dtype is None and np.issubdtype(array.dtype, np.floating):
        peak = float(np.nanmax(np.abs(array))) if array.size else 0.0
        integral = peak <= INT16_MAX and bool(np.all(array == np.round(array)))
        slope = 1.0 if integral or peak == 0 else peak / INT16_MAX  # integers stay exact
        array, dtype = np.round(array / slope).astype(np.int16), np.dtype(np.int16)
    elif dtype is not None:
        array = array.astype(dtype)
    image = nib.Nifti1Image(array, np.asarray(affine, dtype=np.float64))
    image.header.set_data_dtype(array.dtype)
    image.header.set_qform(image.affine, code=1)
    image.header.set_sform(image.affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    if slope is not None:
        image.header.set_slope_inter(slope, 0.0)
    data = image.to_bytes()
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    return write_bytes_atomic(path, data)


def load_nifti(path) -> tuple[np.ndarray, np.ndarray]:
    """(array, affine) of a NIfTI file: scaled or floating-point data as float32, unscaled
    integers as stored (uint8 labels; int16 for images whose values were all integers)."""
    image = nib.load(str(path))
    proxy = image.dataobj  # nibabel moves scl_slope / scl_inter from the header to the proxy
    scaled = getattr(proxy, "slope", 1.0) != 1.0 or getattr(proxy, "inter", 0.0) != 0.0
    if scaled or np.issubdtype(image.get_data_dtype(), np.floating):
        array = image.get_fdata(dtype=np.float32)
    else:
        array = np.asarray(image.dataobj)
    return array, image.affine.copy()
