"""NIfTI reading and writing for studies, labels and phantoms.

Writes are atomic (a hidden temporary file in the destination folder, then ``os.replace``; with
``durable=True`` also fsync'ed), so a server scanning the folder never sees a half-written file, and byte-for-byte reproducible
(``.nii.gz`` is compressed with a zero gzip timestamp), so regenerated committed studies do not
show up as changes. Float images are stored as int16 with a scale factor (``scl_slope``),
which keeps files small at a precision far below MR noise; labels keep their integer type.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

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


def write_bytes_atomic(path, data: bytes, durable: bool = False) -> Path:
    """Write ``data`` to ``path`` through a hidden temporary file in the same folder and
    ``os.replace``: a reader sees the old file or the new one, never a part.

    durable: also ``fsync`` the file and its folder, so the new content survives a power cut or
    a killed server (saved labels, the datastore index); generated data skips it for speed.
    """
    path = Path(path)
    tmp = stage_bytes(path, data, durable)
    commit_staged(tmp, path, durable)
    return path


def stage_bytes(path, data: bytes | None = None, durable: bool = True, src=None) -> Path:
    """Write ``data`` (or a copy of the file ``src``) to a hidden temporary file next to ``path``
    and return it; nothing at ``path`` changes yet. A failure (a full disk) removes the
    temporary file and raises, so a caller that stages every file first changes nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if src is not None:
                with open(src, "rb") as source:
                    shutil.copyfileobj(source, f, 1 << 20)
            else:
                f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; data files are readable like any other
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def commit_staged(tmp, path, durable: bool = True) -> Path:
    """Rename a staged file over ``path`` (atomic), then ``fsync`` the folder so the rename lasts."""
    path = Path(path)
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


def write_json_atomic(path, data, durable: bool = False, **dump_kwargs) -> Path:
    """``json.dumps(data)`` written with ``write_bytes_atomic`` (indented by default)."""
    return write_bytes_atomic(path, json.dumps(data, **{"indent": 2, **dump_kwargs}).encode(), durable)


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
