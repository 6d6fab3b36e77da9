"""Load image and label volumes (NIfTI via nibabel, DICOM series folders and other ITK formats).

Every loader returns a channel-first ``MetaTensor`` ``(1, X, Y, Z)`` whose ``affine`` is the
NIfTI/RAS world affine (MONAI's convention; ``ToModelGridd`` reorients it to LPS), with meta:
``filename_or_obj``, ``source_format`` (nifti | dicom | itk), ``original_shape`` (the file's),
``echo`` and ``num_echoes`` (which echo of a 4D multi-echo file was used; 3D files: 0 of 1),
``volume`` (DICOM folders: which images were read, e.g. ``"echo 1 magnitude: 32 of 256 images
(series holds 2 echo(es) of imaginary, magnitude, phase, real)"``),
``nonfinite_voxels`` (NaN/Inf voxels, replaced by 0 because the robust normalisation and the
networks need finite numbers; an image with no finite voxel at all is refused) and ``constant`` (a constant image is allowed: it normalises to 0).

A DICOM folder is read by the same series and echo rule as a PACS series
(``lib.transforms.dicom_series``): one series per folder (several: a one-line error listing
them), of a multi-echo or magnitude/phase series only the first echo's magnitude images
(``echo`` picks a later echo's). A 2D image is one axial slice (Z = 1).

Every problem a user can cause (missing, empty, corrupt or non-image file, a header claiming
absurd dimensions, a slice smaller than 16 x 16, an echo that does not exist) raises
``lib.errors.UserError`` naming the file and the problem. The header shape is checked against
``MAX_SIDE`` / ``MAX_VOXELS`` before any voxel is read.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.utils import ensure_tuple_rep
from nibabel.orientations import io_orientation

from lib.errors import UserError
from lib.transforms.dicom_series import select_volume

MAX_SIDE = 2048  # voxels along any spatial axis
MAX_VOXELS = 2**28  # voxels of the one volume read (268 M: 1 GiB as float32)
MAX_ECHOES = 64
MIN_INPLANE = 16  # the smallest axial slice side the networks can use
NIBABEL_SUFFIXES = (".nii", ".nii.gz", ".hdr", ".img", ".mgz", ".mgh")


def check_shape(shape, name: str, echo: int = 0) -> tuple[int, int]:
    """Validate a header shape before reading; returns ``(spatial ndim, number of echoes)``."""
    shape = [int(s) for s in shape]
    while len(shape) > 3 and shape[-1] == 1:  # (X, Y, Z, 1, 1) and the like
        shape.pop()
    if len(shape) < 2 or len(shape) > 4:
        raise UserError(f"{name}: {len(shape)}D image of shape {tuple(shape)}: expected 2D, 3D or 4D (multi-echo)")
    spatial, echoes = shape[:3], (shape[3] if len(shape) == 4 else 1)
    if min(shape) < 1 or max(spatial) > MAX_SIDE or int(np.prod(spatial, dtype=np.float64)) > MAX_VOXELS \
            or echoes > MAX_ECHOES:
        raise UserError(f"{name}: the header claims dimensions {tuple(shape)}, beyond the limits "
                        f"({MAX_SIDE} per axis, {MAX_VOXELS} voxels, {MAX_ECHOES} echoes): refusing to load")
    if not 0 <= echo < echoes:
        raise UserError(f"{name}: echo {echo} requested but the image has {echoes} echo(es) (0-based)")
    return len(spatial), echoes


def _nifti(path: Path, echo: int):
    try:
        img = nib.load(str(path))  # reads the header only
        shape, dtype = img.shape, img.get_data_dtype()
    except Exception as exc:
        raise UserError(f"{path.name}: not a readable NIfTI/Analyze image ({exc})") from None
    if dtype.fields is not None or dtype.kind == "c":
        raise UserError(f"{path.name}: voxel type {dtype} (RGB or complex) is not a grey-level image")
    ndim, echoes = check_shape(shape, path.name, echo)
    index = (slice(None),) * min(ndim, 3) + ((echo,) if echoes > 1 else ()) + (0,) * (len(shape) - ndim - (echoes > 1))
    try:
        arr = np.asanyarray(img.dataobj[index])
    except Exception as exc:
        raise UserError(f"{path.name}: corrupt or truncated image data ({exc})") from None
    return arr, np.asarray(img.affine, dtype=np.float64), tuple(shape), echoes


def _itk(path: Path, echo: int, fmt: str, name: str = ""):
    import itk  # slow to import: only for DICOM and other ITK formats
    from monai.transforms import LoadImage

    name = name or path.name
    files = [str(path)]
    if fmt == "dicom":  # the series MONAI's ITKReader will pick: the first one of the folder
        names = itk.GDCMSeriesFileNames.New()
        names.SetUseSeriesDetails(True)
        names.AddSeriesRestriction("0008|0021")
        names.SetDirectory(str(path))
        uids = names.GetSeriesUIDs()
        if not uids:
            raise UserError(f"{name}: folder holds no readable DICOM series")
        files = names.GetFileNames(uids[0])
    try:
        io = itk.ImageIOFactory.CreateImageIO(files[0], itk.CommonEnums.IOFileMode_ReadMode)
        if io is None:
            raise UserError(f"{name}: not an image format this server reads (NIfTI, DICOM, ITK formats)")
        io.SetFileName(files[0])
        io.ReadImageInformation()
        shape = [io.GetDimensions(i) for i in range(io.GetNumberOfDimensions())]
        components = io.GetNumberOfComponents()
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{name}: not a readable image ({exc})") from None
    if fmt == "dicom":
        shape = shape[:2] + [len(files) * int(np.prod(shape[2:]))]
    if components != 1:
        raise UserError(f"{name}: {components} components per voxel (RGB/vector) is not a grey-level image")
    check_shape(shape, name, echo)
    try:
        img = LoadImage(reader="ITKReader", image_only=True)(str(path))
    except Exception as exc:
        raise UserError(f"{name}: corrupt or unreadable image ({exc})") from None
    arr, affine = np.asarray(img), np.asarray(img.affine, dtype=np.float64)
    if affine.shape == (3, 3):  # a 2D file: embed, 1 mm slice thickness
        affine = np.insert(np.insert(affine, 2, 0, axis=0), 2, [0, 0, 1, 0], axis=1)
    ndim, echoes = check_shape(arr.shape, name, echo)
    return (arr[..., echo] if echoes > 1 else arr), affine, tuple(arr.shape), echoes


def _dicom_folder(path: Path, echo: int):
    """A DICOM series folder by the series rule (module doc): ``_itk``'s tuple plus the sentence
    saying which images were read. When some are left out, the kept ones are linked into a
    temporary folder and read from there, as the PACS path reads its cached series."""
    selection = select_volume(path, path.name, echo)
    if not selection.dropped:
        return (*_itk(path, 0, "dicom"), selection.description)
    with tempfile.TemporaryDirectory(prefix="dicom_series_") as tmp:
        for file in selection.kept:
            try:
                os.symlink(file.resolve(), Path(tmp) / file.name)
            except OSError:  # a file system without symbolic links
                shutil.copyfile(file, Path(tmp) / file.name)
        return (*_itk(Path(tmp), 0, "dicom", path.name), selection.description)


def _to_dtype(arr: np.ndarray, dtype, name: str):
    """Float images: NaN/Inf -> 0 (counted); integer labels: must be whole numbers in range."""
    arr = np.asarray(arr).reshape(arr.shape[:3] if arr.ndim >= 3 else arr.shape + (1,))
    bad = ~np.isfinite(arr) if arr.dtype.kind == "f" else np.zeros(arr.shape, bool)
    if np.dtype(dtype).kind == "f":
        if arr.size and bad.all():  # nothing left to segment once NaN/Inf become 0
            raise UserError(f"{name}: every voxel is NaN or infinite; no image data to use")
        out = arr.astype(dtype)
        out[bad] = 0
        return out, int(bad.sum())
    info = np.iinfo(dtype)
    whole = not bad.any() and np.all(np.abs(arr - np.rint(arr)) <= 1e-3)
    if not whole or (arr.size and (arr.min() < info.min or arr.max() > info.max)):
        raise UserError(f"{name}: a label map must hold whole numbers in [{info.min}, {info.max}]")
    return np.rint(arr).astype(dtype), 0


def load_volume(path, echo: int = 0, dtype=np.float32) -> MetaTensor:
    """Load one image or label volume as a ``(1, X, Y, Z)`` MetaTensor (see the module doc).

    path: a NIfTI/Analyze file, a DICOM series folder (one series; see the module doc) or an
    ITK-readable file; echo: 0-based echo of a 4D multi-echo file or of a multi-echo DICOM
    folder; dtype: float32 for images, an integer type (uint8) for label maps (values checked,
    never rounded silently).
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    volume = None
    if path.is_dir():
        arr, affine, shape, echoes, volume = _dicom_folder(path, echo)
        fmt = "dicom"
    elif path.stat().st_size == 0:
        raise UserError(f"{path.name}: empty file (0 bytes)")
    elif path.name.lower().endswith(NIBABEL_SUFFIXES):
        (arr, affine, shape, echoes), fmt = _nifti(path, echo), "nifti"
    else:
        (arr, affine, shape, echoes), fmt = _itk(path, echo, "itk"), "itk"
    if affine.shape != (4, 4) or not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise UserError(f"{path.name}: invalid (singular or non-finite) voxel-to-world affine")
    arr, nonfinite = _to_dtype(arr, dtype, path.name)
    axial = [i for i, (axis, _) in enumerate(io_orientation(affine)) if axis != 2]  # axes other than S-I
    if min(arr.shape[i] for i in axial) < MIN_INPLANE:
        inplane = "x".join(str(arr.shape[i]) for i in axial)
        raise UserError(f"{path.name}: axial slices of {inplane} voxels, smaller than {MIN_INPLANE}x{MIN_INPLANE}")
    meta = {"filename_or_obj": str(path), "source_format": fmt, "original_shape": shape, "echo": echo,
            "num_echoes": echoes, "nonfinite_voxels": nonfinite, "constant": bool(arr.min() == arr.max())}
    if volume:
        meta["volume"] = volume
    return MetaTensor(torch.from_numpy(np.ascontiguousarray(arr[None])), affine=torch.from_numpy(affine), meta=meta)


class LoadVolumed(MapTransform):
    """Dictionary form of ``load_volume``: replaces each path in ``keys`` by its MetaTensor.

    echo: echo index for 4D files; dtype: one per key or one for all, e.g.
    ``LoadVolumed(["image", "label"], dtype=(np.float32, np.uint8))``.
    """

    def __init__(self, keys, echo: int = 0, dtype=np.float32, allow_missing_keys=False):
        super().__init__(keys, allow_missing_keys)
        self.echo, self.dtype = echo, ensure_tuple_rep(dtype, len(self.keys))

    def __call__(self, data):
        d = dict(data)
        for key, dtype in self.key_iterator(d, self.dtype):
            d[key] = load_volume(d[key], self.echo, dtype)
        return d
