"""The local datastore MONAI Label serves, with unreadable files skipped instead of fatal.

A studies folder is a user's folder: a stray text file named ``.nii.gz`` or a truncated
download must not stop the server. Each such file is reported once in the log and is not
listed; everything else behaves exactly as MONAI Label's ``LocalDatastore``.
"""

from __future__ import annotations

import logging
import os

import nibabel as nib
from monailabel.datastore.local import LocalDatastore

logger = logging.getLogger(__name__)


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


class MuscleDatastore(LocalDatastore):
    """``LocalDatastore`` that skips (and logs once) files whose header cannot be read."""

    def __init__(self, *args, **kwargs):
        self._checked: dict[tuple[str, float], bool] = {}
        super().__init__(*args, **kwargs)

    def _list_files(self, path, patterns):
        files = super()._list_files(path, patterns)
        return {name: f for name, f in files.items() if self._readable(os.path.join(path, f))}

    def _readable(self, path: str) -> bool:
        try:
            key = (path, os.path.getmtime(path))
        except OSError:
            return False
        if key not in self._checked:
            ok, why = is_readable_image(path)
            if not ok:
                logger.warning(f"Skipping unreadable study file {path}: {why}")
            self._checked[key] = ok
        return self._checked[key]
