"""MONAI Label's DICOMweb datastore, with this app's label checks and muscle-named DICOM SEG.

MONAI Label's ``DICOMWebDatastore.save_label`` turns a saved label into a DICOM SEG whose
i-th segment takes the i-th ``label_info`` entry *by position*, whatever its ``idx``, with a
spleen code for every segment. A viewer's label (Slicer's segment order, OHIF's names) would
then be stored under the wrong names. Here a ``final`` label is first checked against its
image exactly as in the local datastore (``lib.annotations.check_label``: grid, values,
names, empty → ``UserError``, HTTP 422; nothing is sent to the PACS), converted to our global
values, and sent with one ``label_info`` entry per value in value order, each with a dcmqi
segment description: label = muscle name (``_left`` / ``_right`` when split), category
*Anatomical Structure*, type *Muscle of lower limb* (SNOMED CT codes from pydicom's
dictionary), laterality as a type modifier.

Infer results asked for as DICOM SEG (``output=dicom_seg``) get the same segment names
(``muscle_result_seg``). A series that mixes echoes or magnitude/phase images is served as its first echo's
magnitude (``get_image_uri``; ``lib/transforms/dicom_series.py``).

``dicomweb_datastore(url)`` builds it from MONAI Label's settings as ``MONAILabelApp`` does,
but fails with a clear message instead of downloading dcmqi when ``itkimage2segimage`` is
missing (the machine may be offline; ``pip install dcmqi`` provides it).
"""

from __future__ import annotations

import colorsys
import contextlib
import logging
import os
import shutil
import tempfile

import numpy as np
from monailabel.datastore.dicom import DICOMwebClientX, DICOMWebDatastore
from monailabel.datastore.local import LocalDatastore
from monailabel.datastore.utils.convert import binary_to_image
from monailabel.datastore.utils.convert import nifti_to_dicom_seg as _nifti_to_dicom_seg
from monailabel.datastore.utils.dicom import dicom_web_download_series
from monailabel.interfaces.datastore import DefaultLabelTag

from lib.annotations import check_label
from lib.data.datastore.local import read_grid, read_label
from lib.transforms.dicom_series import select_volume
from lib.data.io import save_nifti
from lib.errors import NotFoundError, UserError
from lib.labels import SIDE_OFFSET, all_labels

logger = logging.getLogger(__name__)
CATEGORY = {"CodeValue": "123037004", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Anatomical Structure"}
MUSCLE = {"CodeValue": "102292000", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Muscle of lower limb"}
SIDES = {"right": {"CodeValue": "24028007", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Right"},
         "left": {"CodeValue": "7771000", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Left"}}


def segment_name(value: int, split: bool) -> tuple[str, str | None]:
    """(segment label, side or None) of a global value; ``split``: the label holds left values."""
    names = {v: k for k, v in all_labels().items()}
    if value > SIDE_OFFSET:
        return f"{names[value - SIDE_OFFSET]}_left", "left"
    return (f"{names[value]}_right", "right") if split else (names[value], None)


def segment_entries(values: list[int]) -> list[dict]:
    """``label_info`` for ``nifti_to_dicom_seg``: one entry per value, in value order."""
    split = any(v > SIDE_OFFSET for v in values)
    entries = []
    for value in values:
        name, side = segment_name(value, split)
        hue = ((value - 1) % SIDE_OFFSET) * 0.618034 % 1.0  # neighbours get distant hues
        rgb = [int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.75, 0.95 if side != "left" else 0.7)]
        attribute = {"labelID": int(value), "SegmentLabel": name, "SegmentDescription": name.replace("_", " "),
                     "SegmentAlgorithmType": "SEMIAUTOMATIC", "SegmentAlgorithmName": "muscle",
                     "SegmentedPropertyCategoryCodeSequence": CATEGORY, "SegmentedPropertyTypeCodeSequence": MUSCLE,
                     "recommendedDisplayRGBValue": rgb}
        if side:
            attribute["SegmentedPropertyTypeModifierCodeSequence"] = SIDES[side]
        entries.append({"name": name, "idx": int(value), "color": rgb, "model_name": "muscle",
                        "segmentAttribute": attribute})
    return entries


class IndexWithBasePath:
    """``LocalDatastore._datastore`` (the index model) as a data descriptor that gives each model
    assigned to it the store's base path before any other thread can read it.

    MONAI Label's ``LocalDatastore._init_from_datastore_file`` (another process rewrote the index)
    assigns the re-read model and sets its ``base_path`` on the next line. A request thread in
    between read ``image_path()`` as a relative path, and ``DICOMWebDatastore.get_image_uri``
    downloaded a whole series into the server's working folder (found in the repository after
    the test suite: a folder of 16 images named after a multi-echo series).
    """

    def __set_name__(self, owner, name):
        self.slot = f"_{owner.__name__}{name}"

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        try:
            return instance.__dict__[self.slot]
        except KeyError:
            raise AttributeError("_datastore") from None

    def __set__(self, instance, model):
        base = instance.__dict__.get("_datastore_path")
        if base and not model.base_path:
            model.base_path = base
        instance.__dict__[self.slot] = model


class MuscleDicomWebDatastore(DICOMWebDatastore):
    """``DICOMWebDatastore`` whose ``final`` labels are checked and stored as muscle-named SEG."""

    _datastore = IndexWithBasePath()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Fixed once, as well (before ``IndexWithBasePath``, a note written during a reload of the
        # index landed in the working folder).
        self._series_root = os.path.realpath(self._datastore.image_path())

    def _note(self, image_id: str, kind: str) -> str:
        """A note beside the cached series (``volume``, ``unusable``): not in datastore_v2.json,
        which MONAI Label's background processes rewrite and the server then reloads."""
        return os.path.join(self._series_root, image_id) + f".{kind}.txt"

    def _write_note(self, image_id: str, kind: str, text: str) -> None:
        """Replace a note whole: another process reading it never finds it emptied half-way."""
        note = self._note(image_id, kind)
        with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(note), prefix=".note.", delete=False) as f:
            f.write(text)
        os.replace(f.name, note)

    def list_images(self):
        """The PACS's series, less those found unusable (missing geometry, mixed): the others
        stay served and a strategy does not meet a broken series again (in any process, until
        the cache folder is cleared)."""
        return [i for i in super().list_images() if not os.path.exists(self._note(i, "unusable"))]

    def get_image_uri(self, image_id: str) -> str:
        """The series as one NIfTI volume: of a multi-echo / multi-type series only the first
        echo's magnitude images (``lib.transforms.dicom_series``, the rule DICOM folders are read
        with too), the others moved out of the cached series folder (MONAI Label's converter and
        the SEG writer read the whole folder); which images were used goes to the log and to the
        image's info (``volume``)."""
        image_dir = os.path.join(self._series_root, image_id)
        converted = os.path.join(self._series_root, f"{image_id}.nii.gz")
        if not self._convert_to_nifti or os.path.exists(converted):
            return super().get_image_uri(image_id)
        if not os.path.isdir(image_dir) or not os.listdir(image_dir):
            self._fetch_series(image_id, image_dir)
        return super().get_image_uri(image_id)

    def _fetch_series(self, image_id: str, image_dir: str) -> None:
        """Download the series and keep the chosen images, in a private folder renamed to
        ``image_dir`` only when done: the server's processes (an infer and a scoring task, say)
        share the cache, and one that found the folder half downloaded, or half sorted by the
        other, served a volume of 12 of a series' 16 images."""
        parent = os.path.dirname(image_dir)
        work = tempfile.mkdtemp(prefix=f".{image_id}.", dir=parent)
        try:
            dicom_web_download_series(None, image_id, work, self._client, self._fetch_by_frame)
            try:
                selection = select_volume(work, image_id)
            except UserError as exc:
                logger.warning(f"Series {image_id} is not served: {exc}")
                self._write_note(image_id, "unusable", str(exc))
                raise
            if selection.dropped:
                os.makedirs(work + ".unused", exist_ok=True)
                for path in selection.dropped:
                    shutil.move(str(path), os.path.join(work + ".unused", path.name))
                logger.warning(f"Series {image_id}: using {selection.description}")
            self._write_note(image_id, "volume", selection.description)
            try:
                os.rename(work, image_dir)  # replaces an empty folder, fails on a filled one
            except OSError:  # another process finished the same series first: keep its folder
                return
            if selection.dropped:
                with contextlib.suppress(OSError):  # set aside already by another process
                    os.rename(work + ".unused", image_dir + ".unused")
        finally:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(work + ".unused", ignore_errors=True)

    def get_image_info(self, image_id: str) -> dict:
        """MONAI Label's image info plus ``volume``: which images of the series were used."""
        info = super().get_image_info(image_id)
        note = self._note(image_id, "volume")
        if os.path.isfile(note):
            with open(note) as f:
                info["volume"] = f.read()
        return info

    def get_label_uri(self, label_id: str, label_tag: str, image_id: str = "") -> str:
        """The cached copy of a label saved through this server, when there is one.

        MONAI Label's version fetches the series *named* ``label_id`` from the PACS; our
        training code asks by image id (a label's id is its image's), which would fetch the
        MR series itself and fail to read it as a SEG.
        """
        cached = LocalDatastore.get_label_uri(self, label_id, label_tag)
        if cached and os.path.exists(cached):
            return cached
        return super().get_label_uri(label_id, label_tag, image_id)

    def save_label(self, image_id: str, label_filename: str, label_tag, label_info, label_id: str = "") -> str:
        tag = getattr(label_tag, "value", label_tag)
        if tag != DefaultLabelTag.FINAL.value:  # our own infer results ("original"): cache only
            return super().save_label(image_id, label_filename, label_tag, label_info)
        if image_id not in self.list_images():
            raise NotFoundError(f"image {image_id!r} not found in the PACS (MR series)")
        image_uri = self.get_image_uri(image_id)
        with tempfile.TemporaryDirectory() as tmp:
            if label_filename.endswith(".bin"):  # OHIF's raw label buffer
                label_filename = shutil.move(binary_to_image(image_uri, label_filename), os.path.join(tmp, "bin.nii.gz"))
            shape, affine = read_grid(image_uri, f"image {image_id!r}")
            label, label_affine = read_label(label_filename, shape)
            info = dict(label_info or {})
            check = check_label(label, label_affine, shape, affine, info)
            path = os.path.join(tmp, "label.nii.gz")
            save_nifti(path, check.label.astype(np.uint8), label_affine)
            info["label_info"] = segment_entries(sorted(int(v) for v in np.unique(check.label) if v))
            info.setdefault("annotated_slices", check.slices)
            return super().save_label(image_id, path, label_tag, info)


def muscle_result_seg(series_dir, label, label_info=None, file_ext="*", use_itk=True) -> str:
    """``nifti_to_dicom_seg`` for an infer result (``POST /infer/...?output=dicom_seg``): our
    results hold global values, so each segment is named from its value, not from the
    request's ``label_info`` taken by position (which named leg muscles after thigh ones)."""
    import SimpleITK as sitk

    values = sorted(int(v) for v in np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(label)))) if v)
    return _nifti_to_dicom_seg(series_dir, label, segment_entries(values), file_ext, use_itk)


def dicomweb_datastore(url: str) -> MuscleDicomWebDatastore:
    """The datastore for a DICOMweb URL, from MONAI Label's settings (module doc)."""
    from dicomweb_client.session_utils import create_session_from_user_pass
    from monailabel.config import settings
    from monailabel.endpoints import infer as infer_endpoint

    infer_endpoint.nifti_to_dicom_seg = muscle_result_seg  # the endpoint's own name for it (see above)

    if shutil.which("itkimage2segimage") is None:
        raise UserError("itkimage2segimage (dcmqi) is not on PATH: pip install dcmqi, or start the server "
                        "with the virtual environment's bin folder on PATH")
    session = None
    if settings.MONAI_LABEL_DICOMWEB_USERNAME and settings.MONAI_LABEL_DICOMWEB_PASSWORD:
        session = create_session_from_user_pass(settings.MONAI_LABEL_DICOMWEB_USERNAME,
                                                settings.MONAI_LABEL_DICOMWEB_PASSWORD)
    client = DICOMwebClientX(url=url, session=session, qido_url_prefix=settings.MONAI_LABEL_QIDO_PREFIX,
                             wado_url_prefix=settings.MONAI_LABEL_WADO_PREFIX,
                             stow_url_prefix=settings.MONAI_LABEL_STOW_PREFIX)
    cache_path = (settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip()
    return MuscleDicomWebDatastore(client=client, search_filter=settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER,
                                   cache_path=cache_path or None,
                                   fetch_by_frame=settings.MONAI_LABEL_DICOMWEB_FETCH_BY_FRAME,
                                   convert_to_nifti=settings.MONAI_LABEL_DICOMWEB_CONVERT_TO_NIFTI)
