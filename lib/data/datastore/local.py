"""The local datastore MONAI Label serves: unreadable files skipped, bad labels refused.

A studies folder is a user's folder: a stray text file named ``.nii.gz`` or a truncated
download must not stop the server. Each such file is reported once in the log and is not
listed.

A label saved by a client (``PUT /datastore/label``, tag ``final`` or any tag other than
MONAI Label's ``original``, where our own infer results go) is checked against its image by
``lib.annotations.check_label`` *before* anything is written: a wrong grid, unknown
values or muscle names, an empty label or a file that is not an image raise ``UserError``
(HTTP 422), an unknown image id ``NotFoundError`` (404), and the label already stored and its
``datastore_v2.json`` entry stay as they were. The saved info gets the ``annotated_slices``
the check found when the client did not send them.

Ids, tags and file types are checked too, whatever route calls the datastore: an image id or a
label tag must be a plain name (no ``/``, ``..``: nothing is written outside the studies
folder), a stored file's type must be one the datastore lists (an upload named ``.json`` could
otherwise replace ``datastore_v2.json``), and an uploaded image must load (``load_volume``:
header limits, corrupt data) before it is stored. Writes are atomic and durable
(``lib.data.datastore.safe``); everything else behaves as MONAI Label's ``LocalDatastore``.

DICOM series in a studies folder: each subfolder holding the DICOM files of one series is an
image whose id is the folder's name. It is read by the same series and echo rule as a PACS
series (``lib.transforms.dicom_series``: of a multi-echo or magnitude/phase series, the first
echo's magnitude) and served, like the PACS path serves a series, as a NIfTI volume made once
and kept in ``<studies>/.dicom_volumes/`` (made again when the folder's files change). Viewers
download that volume, labels are saved and checked on its grid, and the image's info says
which images were used (``"volume": "echo 1 magnitude: 32 of 256 images (...)"``). A folder
holding several series, or a series without slice geometry, is reported once in the log (the
series listed) and not served, as an unreadable file is.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import threading

import nibabel as nib
import numpy as np
from monailabel.interfaces.datastore import DefaultLabelTag

from lib.annotations import LabelCheck, check_label, shapes_match
from lib.data.datastore.safe import SafeLocalDatastore
from lib.data.io import save_nifti
from lib.errors import NotFoundError, UserError
from lib.files import write_json_atomic
from lib.identifiers import check_identifier
from lib.transforms.dicom_series import select_volume
from lib.transforms.loading import NIBABEL_SUFFIXES, check_shape, load_volume

logger = logging.getLogger(__name__)
DICOM_VOLUMES = ".dicom_volumes"  # in the studies folder: each DICOM series folder as one NIfTI volume
INT16_EXACT = 32000  # whole pixel values up to this are stored exactly as int16 (lib.data.io)


def is_dicom_folder(path: str) -> bool:
    """Whether a folder holds DICOM files: one of its first 8 files has the Part 10 ``DICM`` mark."""
    try:
        names = sorted(os.listdir(path))
    except OSError:
        return False
    seen = 0
    for name in names:
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            continue
        try:
            with open(file, "rb") as f:
                if f.read(132)[128:132] == b"DICM":
                    return True
        except OSError:
            pass
        seen += 1
        if seen >= 8:
            break
    return False


def _folder_stamp(path: str) -> list:
    """What changes when files are added to, removed from or renamed in a folder."""
    st = os.stat(path)
    return [st.st_mtime_ns, len(os.listdir(path))]


def is_readable_image(path: str) -> tuple[bool, str]:
    """Whether an image file's header can be read (NIfTI checked; other formats trusted)."""
    if not path.endswith((".nii", ".nii.gz")):
        return True, ""
    try:
        if os.path.getsize(path) == 0:
            return False, "empty file"
        nib.load(path).header.get_data_shape()
        return True, ""
    except Exception as e:  # nibabel raises several types for corrupt headers
        return False, str(e).splitlines()[0] if str(e) else type(e).__name__


def _one_line(exc: Exception, path: str = "") -> str:
    """The first line of an error message, without the (temporary, meaningless) file path."""
    text = str(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    return text.replace(path, "label") if path else text


def _spatial(shape) -> tuple[int, ...]:
    """A header shape without trailing singleton axes beyond the third: (X, Y, Z, 1) -> (X, Y, Z)."""
    shape = [int(s) for s in shape]
    while len(shape) > 3 and shape[-1] == 1:
        shape.pop()
    return tuple(shape)


def read_grid(path: str, name: str) -> tuple[tuple[int, ...], np.ndarray]:
    """(shape, NIfTI/RAS affine) of an image file: the header only for NIfTI, else ``load_volume``."""
    if path.lower().endswith(NIBABEL_SUFFIXES):
        try:
            img = nib.load(path)
            return _spatial(img.shape), np.asarray(img.affine, dtype=np.float64)
        except Exception as exc:
            raise UserError(f"{name}: not a readable image ({_one_line(exc)})") from None
    volume = load_volume(path)
    return tuple(int(s) for s in volume.shape[1:]), np.asarray(volume.affine, dtype=np.float64)


def read_label(path: str, image_shape) -> tuple[np.ndarray, np.ndarray]:
    """(array (X, Y, Z), affine) of an uploaded label file; ``UserError`` when it is not an image.

    NIfTI is read with nibabel (the header first: a label whose grid differs from its image is
    refused before its voxels are read); other formats through ``load_volume`` (ITK), whose
    affine is in the same NIfTI/RAS convention.
    """
    if os.path.getsize(path) == 0:
        raise UserError("label file is empty (0 bytes)")
    if path.lower().endswith(NIBABEL_SUFFIXES):
        try:
            img = nib.load(path)
            shape = _spatial(img.shape)
        except Exception as exc:
            raise UserError(f"label file is not a readable NIfTI image ({_one_line(exc, path)})") from None
        check_shape(shape, "label")
        if not shapes_match(shape, image_shape):  # before reading any voxel
            raise UserError(f"label shape {shape} does not match its image {tuple(image_shape)[:3]}")
        try:
            array = np.asanyarray(img.dataobj)
        except Exception as exc:
            raise UserError(f"label file is corrupt or truncated ({_one_line(exc, path)})") from None
        if array.dtype.fields is not None or array.dtype.kind not in "biuf":
            raise UserError(f"label voxel type {array.dtype} is not a label map")
        return array, np.asarray(img.affine, dtype=np.float64)
    try:
        volume = load_volume(path)  # float32: check_label reports non-integer values itself
    except UserError as exc:  # its message starts with the (temporary, meaningless) file name
        message = _one_line(exc, path).removeprefix(f"{os.path.basename(path)}: ")
        raise UserError(f"label file: {message}") from None
    return volume.numpy()[0], np.asarray(volume.affine, dtype=np.float64)


def _plain_name(key: str, value) -> str:
    problem = check_identifier(key, value)
    if problem:
        raise UserError(problem)
    return value


class MuscleDatastore(SafeLocalDatastore):
    """``LocalDatastore`` that skips (and logs once) files whose header cannot be read, and
    checks ids, file types, uploaded images and every client-saved label before storing them."""

    def __init__(self, *args, **kwargs):
        self._checked: dict[tuple[str, float], bool] = {}
        self._dicom_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def _list_files(self, path, patterns):
        files = super()._list_files(path, patterns)
        if os.path.realpath(path) == os.path.realpath(self._datastore.image_path()):
            files.update({name: name for name in self._dicom_folders(path)})
        return {name: f for name, f in files.items() if self._readable(os.path.join(path, f))}

    def _dicom_folders(self, path: str) -> list[str]:
        """Subfolders of the studies folder that hold DICOM files (not hidden, not ``labels``)."""
        labels = os.path.realpath(self._datastore.label_path(None))
        return sorted(entry.name for entry in os.scandir(path)
                      if entry.is_dir() and not entry.name.startswith(".")
                      and os.path.realpath(entry.path) != labels and is_dicom_folder(entry.path))

    def _readable(self, path: str) -> bool:
        try:
            key = (path, os.path.getmtime(path))
        except OSError:
            return False
        if key not in self._checked:
            if os.path.isdir(path):
                ok, why = self._usable_series(path)
                if not ok:
                    logger.warning(f"Skipping DICOM folder {path}: {why}")
            else:
                ok, why = is_readable_image(path)
                if not ok:
                    logger.warning(f"Skipping unreadable study file {path}: {why}")
            self._checked[key] = ok
        return self._checked[key]

    @staticmethod
    def _usable_series(path: str) -> tuple[bool, str]:
        """Whether a DICOM folder makes one volume by the series rule (headers only)."""
        try:
            select_volume(path, os.path.basename(path))
            return True, ""
        except UserError as exc:
            return False, str(exc)

    def _to_id(self, file: str):
        """A DICOM series folder's id is its whole name (``1.2.840...`` has no extension)."""
        if os.path.isdir(os.path.join(self._datastore.image_path(), file)):
            return file, ""
        return super()._to_id(file)

    def dicom_volume(self, image_id: str, folder: str) -> tuple[str, str]:
        """(path of the NIfTI volume served for a DICOM folder, which images it holds): made by
        ``load_volume`` (the series rule) the first time and whenever the folder's files change."""
        studies = os.path.realpath(self._datastore.image_path())
        volume_path = os.path.join(studies, DICOM_VOLUMES, f"{image_id}.nii.gz")
        note_path = volume_path[: -len(".nii.gz")] + ".json"
        with self._dicom_lock:
            stamp = _folder_stamp(folder)
            try:
                with open(note_path) as f:
                    note = json.load(f)
                if note.get("stamp") == stamp and os.path.isfile(volume_path):
                    return volume_path, note["volume"]
            except (OSError, ValueError, KeyError):
                pass
            volume = load_volume(folder)
            array = volume.numpy()[0]
            exact = bool(np.all(array == np.round(array))) and float(np.abs(array).max(initial=0)) <= INT16_EXACT
            save_nifti(volume_path, array, np.asarray(volume.affine, dtype=np.float64),
                       dtype=None if exact else np.float32)
            description = volume.meta.get("volume", "")
            write_json_atomic(note_path, {"stamp": stamp, "volume": description, "folder": folder})
            logger.info(f"DICOM folder {image_id}: using {description} -> {volume_path}")
            return volume_path, description

    def get_image_uri(self, image_id: str) -> str:
        """The image file; for a DICOM series folder, its NIfTI volume (module doc)."""
        uri = super().get_image_uri(image_id)
        if uri and os.path.isdir(uri):
            return self.dicom_volume(image_id, uri)[0]
        return uri

    def get_image_info(self, image_id: str) -> dict:
        """MONAI Label's image info; for a DICOM series folder also ``volume`` (which images of
        the series were used) and ``dicom_folder``, with ``path`` and ``name`` of the volume served."""
        info = super().get_image_info(image_id)
        folder = info.get("path")
        if folder and os.path.isdir(folder):
            path, description = self.dicom_volume(image_id, folder)
            info.update(path=path, name=os.path.basename(path), volume=description, dicom_folder=folder)
        return info

    def _served_ext(self, filename: str, what: str) -> str:
        """The file's datastore extension; ``UserError`` when the datastore would not list it."""
        _, ext = self._to_id(os.path.basename(filename))
        if not any(fnmatch.fnmatch(f"x{ext}", pattern) for pattern in self._extensions):
            allowed = ", ".join(p.lstrip("*") for p in self._extensions)
            raise UserError(f"{what} file type {ext or '(none)'!r} is not served (allowed: {allowed})")
        return ext

    def add_image(self, image_id: str, image_filename: str, image_info) -> str:
        """Check the id, the type and that the upload loads, then store it (atomically)."""
        name_id, _ = self._to_id(os.path.basename(image_filename))
        _plain_name("image", image_id or name_id)
        self._served_ext(image_filename, "image")
        try:
            load_volume(image_filename)  # header limits first, then every voxel: corrupt data fails here
        except UserError as exc:
            message = _one_line(exc).replace(image_filename, "upload").removeprefix(f"{os.path.basename(image_filename)}: ")
            raise UserError(f"image file: {message}") from None
        return super().add_image(image_id, image_filename, image_info)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info) -> str:
        """Check, then save: see the module doc. Returns the label id (the image id)."""
        tag = _plain_name("tag", getattr(label_tag, "value", label_tag))
        if not self._datastore.objects.get(image_id):
            raise NotFoundError(f"image {image_id!r} not found")
        if tag == DefaultLabelTag.ORIGINAL.value:  # our own infer results, saved by MONAI Label
            self._served_ext(label_filename, "label")
            return super().save_label(image_id, label_filename, label_tag, label_info)
        info = dict(label_info or {})
        check = self.check_label_file(image_id, label_filename, info)
        self._served_ext(label_filename, "label")  # after the check: "not an image" says more
        if info.get("annotated_slices") is None:
            info["annotated_slices"] = check.slices
        logger.info(f"Label for {image_id} ({tag}): values {check.values}, annotated slices {check.slices}")
        return super().save_label(image_id, label_filename, label_tag, info)

    def check_label_file(self, image_id: str, label_filename: str, info: dict) -> LabelCheck:
        """``check_label`` of a label file against the stored image ``image_id``."""
        image_shape, image_affine = read_grid(self.get_image_uri(image_id), f"image {image_id!r}")
        label, label_affine = read_label(label_filename, image_shape)
        return check_label(label, label_affine, image_shape, image_affine, info)
