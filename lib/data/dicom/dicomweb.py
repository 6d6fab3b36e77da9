"""Talking to a DICOMweb PACS (Orthanc): the login, and uploading studies with STOW-RS.

The login is never taken from the command line (it would show in ``ps``): the user name and
password come from ``MONAI_LABEL_DICOMWEB_USERNAME`` / ``MONAI_LABEL_DICOMWEB_PASSWORD``
(MONAI Label's own settings, which the server reads too), else from what
``scripts/orthanc.sh`` made: user ``muscle`` (or ``ORTHANC_USER``) and the password in
``var/orthanc/password`` (or ``ORTHANC_PASSWORD``; ``ORTHANC_DIR`` moves the folder).

``upload`` sends NIfTI files (converted by ``lib.data.dicom.export``) and folders of real
DICOM files as they are, one series at a time, and names each series it stored.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_user_pass

from lib.data.dicom.export import file_key, volume_to_series
from lib.errors import UserError
from lib.paths import ROOT

logger = logging.getLogger(__name__)
NIFTI_SUFFIXES = (".nii", ".nii.gz")
BATCH = 16  # instances per STOW request: small requests, steady memory


def dicomweb_login() -> tuple[str, str] | None:
    """(user, password) for the PACS, or None when none is configured (module doc)."""
    user = os.environ.get("MONAI_LABEL_DICOMWEB_USERNAME") or os.environ.get("ORTHANC_USER") or "muscle"
    password = os.environ.get("MONAI_LABEL_DICOMWEB_PASSWORD") or os.environ.get("ORTHANC_PASSWORD")
    password_file = ROOT / os.environ.get("ORTHANC_DIR", "var/orthanc") / "password"
    if not password and password_file.is_file():
        password = password_file.read_text().strip()
    return (user, password) if password else None


def dicomweb_client(url: str, login: tuple[str, str] | None) -> DICOMwebClient:
    session = create_session_from_user_pass(*login) if login else None
    return DICOMwebClient(url=url.rstrip("/"), session=session)


def check_pacs(client: DICOMwebClient, search_filter: dict | None = None) -> list[dict]:
    """The series the PACS lists for ``search_filter``; ``UserError`` naming why it cannot."""
    try:
        return client.search_for_series(search_filters=search_filter or {})
    except requests.exceptions.ConnectionError:
        raise UserError(f"no DICOMweb server answers at {client.base_url} (is Orthanc running? "
                        "bash scripts/orthanc.sh)") from None
    except requests.exceptions.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else "?"
        hint = (" - set MONAI_LABEL_DICOMWEB_USERNAME / MONAI_LABEL_DICOMWEB_PASSWORD, or run "
                "bash scripts/orthanc.sh url" if code in (401, 403) else "")
        raise UserError(f"DICOMweb server {client.base_url} refused the search (HTTP {code}){hint}") from None


def nifti_series(path: Path) -> list[pydicom.Dataset]:
    """A NIfTI study as one MR series; a 4D file gives its first volume (SPEC §2: first echo)."""
    try:
        img = nib.load(path)
        volume = np.asanyarray(img.dataobj)
    except Exception as exc:
        raise UserError(f"{path}: not a readable NIfTI image ({str(exc).splitlines()[0]})") from None
    if volume.ndim == 4:
        volume = volume[..., 0]
    name = path.name.removesuffix(".gz").removesuffix(".nii")
    body_part = next((part for part in ("thigh", "leg") if part in name.lower()), "")
    return volume_to_series(volume, img.affine, file_key(path), patient_id=name[:64], description=name,
                            body_part=body_part)


def dicom_files(folder: Path) -> dict[str, list[Path]]:
    """Every DICOM file under ``folder`` (recursively), grouped by series; other files skipped.

    Only headers are read here: a study folder can hold gigabytes, so ``upload`` reads the
    files a batch at a time."""
    series = defaultdict(list)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, OSError, ValueError):
            continue  # not DICOM (a README, a DICOMDIR's neighbours): nothing to send
        if "SOPInstanceUID" in ds and "SeriesInstanceUID" in ds:
            series[str(ds.SeriesInstanceUID)].append(path)
    return series


def _dataset(item, header_only: bool = False) -> pydicom.Dataset:
    """A converted dataset as it is, a DICOM file read from disk."""
    return item if isinstance(item, pydicom.Dataset) else pydicom.dcmread(item, stop_before_pixels=header_only)


def collect(paths: list[str]) -> list[tuple[str, list]]:
    """(name, instances) of each series to upload: converted datasets (NIfTI) or DICOM file
    paths; every NIfTI converted and every DICOM header read before anything is sent."""
    out = []
    for raw in paths:
        path = Path(raw)
        if path.is_file() and path.name.endswith(NIFTI_SUFFIXES):
            out.append((path.name, nifti_series(path)))
        elif path.is_dir():
            niftis = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(NIFTI_SUFFIXES))
            out += [(p.name, nifti_series(p)) for p in niftis]
            if not niftis:
                found = dicom_files(path)
                if not found:
                    raise UserError(f"{path}: no NIfTI or DICOM files found")
                out += [(f"{path.name}/{uid}", datasets) for uid, datasets in found.items()]
        else:
            raise UserError(f"{path}: not a NIfTI file or a folder")
    return out


def upload(client: DICOMwebClient, series: list[tuple[str, list]]) -> list[dict]:
    """STOW-RS every series; returns one record per series (name, uid, modality, instances)."""
    done = []
    for name, datasets in series:
        for start in range(0, len(datasets), BATCH):
            try:
                client.store_instances([_dataset(item) for item in datasets[start:start + BATCH]])
            except requests.exceptions.HTTPError as exc:
                code = exc.response.status_code if exc.response is not None else "?"
                raise UserError(f"{name}: the PACS refused the upload (HTTP {code})") from None
        first = _dataset(datasets[0], header_only=True)
        done.append({"name": name, "series": str(first.SeriesInstanceUID), "study": str(first.StudyInstanceUID),
                     "modality": str(first.get("Modality", "")), "instances": len(datasets)})
    return done
