"""A volume as an MR DICOM series with correct geometry, for a PACS (``python main.py upload``).

The phantoms and NIfTI studies are (X, Y, Z) arrays with a NIfTI (RAS) affine
(docs/CONVENTIONS.md). DICOM patient coordinates are LPS, so the affine is flipped once:
``lps = diag(-1, -1, 1) @ affine``. Each slice k along the third axis becomes one MR Image
Storage instance whose

- pixel row r, column c is voxel (c, r, k): ``pixel_array = volume[:, :, k].T``;
- ImageOrientationPatient is the unit directions of array axes 0 (along a row) and 1 (down a
  column); PixelSpacing is ``[spacing of axis 1, spacing of axis 0]`` (row spacing first);
- ImagePositionPatient is the LPS centre of voxel (0, 0, k); SliceThickness and
  SpacingBetweenSlices are the axis-2 spacing.

Reading the series back with ITK (as MONAI Label's DICOMweb datastore does) gives the same
grid and affine; ``tests/data/dicom/test_dicom_export.py`` checks it. UIDs are derived from a
caller-given key, so uploading the same study twice replaces it instead of duplicating it.
"""

from __future__ import annotations

import datetime
import hashlib

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset, validate_file_meta
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, PYDICOM_IMPLEMENTATION_UID, generate_uid

from lib.errors import UserError

UID_PREFIX = "1.2.826.0.1.3680043.10.1484."  # within pydicom's root; the suffix is a hash


def _uid(key: str, what: str) -> str:
    return generate_uid(prefix=UID_PREFIX, entropy_srcs=[key, what])


def lps_geometry(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit directions (3, 3) of the array axes in LPS, spacings (3,), LPS origin) of an affine.

    Raises ``UserError`` when the axes are not orthogonal: a DICOM slice stack cannot shear.
    """
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, dtype=np.float64)
    axes = lps[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    if np.any(spacing <= 0) or not np.all(np.isfinite(axes)):
        raise UserError("image affine has a zero or non-finite voxel size")
    directions = axes / spacing
    if not np.allclose(directions.T @ directions, np.eye(3), atol=1e-4):
        raise UserError("image axes are not orthogonal (sheared affine): cannot write a DICOM slice stack")
    return directions, spacing, lps[:3, 3]


def to_stored_pixels(volume: np.ndarray) -> tuple[np.ndarray, float, float]:
    """uint16 pixels plus (RescaleSlope, RescaleIntercept) so that slope * pixel + intercept
    gives the values back: integer images as they are, others scaled to the 16-bit range."""
    volume = np.asarray(volume, dtype=np.float64)
    if not np.all(np.isfinite(volume)):
        raise UserError("image holds NaN or infinite values")
    lo, hi = float(volume.min(initial=0.0)), float(volume.max(initial=0.0))
    if lo >= 0 and hi <= 65535 and np.all(volume == np.round(volume)):
        return volume.astype(np.uint16), 1.0, 0.0
    slope = (hi - lo) / 65535.0 or 1.0
    return np.round((volume - lo) / slope).astype(np.uint16), slope, lo


def volume_to_series(volume: np.ndarray, affine: np.ndarray, key: str, patient_id: str = "MUSCLE0001",
                     description: str = "", body_part: str = "", echo_time_ms: float | None = None) -> list[Dataset]:
    """One MR Image Storage dataset per slice of ``volume`` (X, Y, Z), one series.

    Args:
        volume: the magnitude image, (X, Y, Z) as in the NIfTI file.
        affine: its 4x4 NIfTI (RAS) affine.
        key: a stable name of the study (file name, phantom id): UIDs are derived from it.
        patient_id, description, body_part: PatientID/Name, SeriesDescription, BodyPartExamined.
        echo_time_ms: EchoTime, when known (SPEC §2: first echo of a multi-echo GRE).
    """
    volume = np.asarray(volume)
    if volume.ndim == 4 and volume.shape[3] == 1:
        volume = volume[..., 0]
    if volume.ndim != 3 or min(volume.shape) < 1:
        raise UserError(f"image must be a 3D volume, got shape {volume.shape}")
    directions, spacing, origin = lps_geometry(affine)
    pixels, slope, intercept = to_stored_pixels(volume)
    study, series, frame = _uid(key, "study"), _uid(key, "series"), _uid(key, "frame")
    now = datetime.datetime.now()
    datasets = []
    for k in range(volume.shape[2]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = _uid(key, f"instance {k}")
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        validate_file_meta(ds.file_meta, enforce_standard=True)  # adds group length and version
        ds.preamble = b"\0" * 128  # STOW clients write datasets "like original": a Part 10 file needs it
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName, ds.PatientID = patient_id, patient_id
        ds.PatientBirthDate, ds.PatientSex = "", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", ""
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
        ds.StudyDescription = description or key
        ds.SeriesDescription = description or key
        ds.Modality, ds.Manufacturer = "MR", "muscle-segmentation (converted)"
        ds.BodyPartExamined = body_part.upper()
        ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber = 1, k + 1, 1
        ds.PositionReferenceIndicator = ""
        # MR Image module: a magnitude image of a 3D gradient-echo acquisition
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "GR", "SP", ""
        ds.MRAcquisitionType = "3D"
        ds.EchoTime = f"{echo_time_ms:.3f}" if echo_time_ms is not None else ""
        ds.RepetitionTime, ds.EchoTrainLength = "", ""
        ds.EchoNumbers = 1
        ds.ImagedNucleus = "1H"
        # geometry (module doc)
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*directions[:, 0], *directions[:, 1])]
        ds.ImagePositionPatient = [f"{v:.4f}" for v in origin + k * spacing[2] * directions[:, 2]]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]
        ds.SliceThickness = ds.SpacingBetweenSlices = f"{spacing[2]:.6f}"
        ds.SliceLocation = f"{float(np.dot(origin + k * spacing[2] * directions[:, 2], np.cross(directions[:, 0], directions[:, 1]))):.4f}"
        # pixels
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = int(volume.shape[1]), int(volume.shape[0])
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = f"{slope:.10g}", f"{intercept:.10g}", "US"
        ds.PixelData = np.ascontiguousarray(pixels[:, :, k].T).tobytes()
        datasets.append(ds)
    return datasets


def file_key(path, data: bytes | None = None) -> str:
    """A stable key of a file for UIDs: its name and a hash of its content."""
    digest = hashlib.sha256(data if data is not None else open(path, "rb").read()).hexdigest()[:16]
    return f"{path.name}:{digest}"
