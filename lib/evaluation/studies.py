"""The labelled studies of a datastore, with the tags an evaluation groups them by.

A local datastore is MONAI Label's layout: ``<dir>/<id>.nii.gz`` images (or ``<dir>/<id>/``
DICOM series folders, read by the series rule as the datastore serves them) and
``<dir>/labels/final/<id>.*`` labels, plus the ``datastore_v2.json`` index MONAI Label keeps
(the info saved with each label: ``annotated_slices``, a viewer's ``label_info``). A DICOMweb
URL is read through MONAI Label's own DICOMweb datastore (series and DICOM SEG labels).

Tags: ``severity`` and ``subject`` of a study come from a CSV (columns ``id``, ``severity``,
``subject``; ``<dir>/tags.csv`` by default, which ``python main.py generate`` writes), else
from the image or label info in the index. A study without a subject is its own subject.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from lib.errors import UserError

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
TAGS_FILE = "tags.csv"


@dataclass
class LabelledStudy:
    """One image with a ``final`` label: paths, the label's info, and its tags."""

    id: str
    image: str
    label: str
    info: dict = field(default_factory=dict)
    subject: str = ""
    severity: str = ""


def study_id(path: Path) -> str:
    name = path.name
    return next((name[: -len(s)] for s in IMAGE_SUFFIXES if name.endswith(s)), path.stem)


def read_tags(path) -> dict[str, dict]:
    """``id -> {"severity", "subject"}`` from a CSV with an ``id`` (or ``image``) column."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"tags file not found: {path}")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not ({"id", "image"} & set(rows[0])):
        raise UserError(f"{path.name}: a tags CSV needs an 'id' column (and 'severity', 'subject')")
    return {(r.get("id") or r.get("image") or "").strip(): {k: (v or "").strip() for k, v in r.items()}
            for r in rows}


def _index(folder: Path) -> dict:
    """MONAI Label's ``datastore_v2.json`` objects, or {} when there is none (or it is unreadable)."""
    try:
        return json.loads((folder / "datastore_v2.json").read_text()).get("objects", {})
    except (OSError, ValueError, AttributeError):
        return {}


def _tag(study: LabelledStudy, tags: dict, image_info: dict) -> LabelledStudy:
    row = tags.get(study.id, {})
    for key in ("severity", "subject"):
        value = row.get(key) or image_info.get(key) or study.info.get(key) or ""
        setattr(study, key, str(value))
    study.subject = study.subject or study.id
    return study


def local_studies(folder, tags_csv=None) -> list[LabelledStudy]:
    """Every image of ``folder`` that has a ``labels/final`` label, in id order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"studies folder not found: {folder}")
    tags = read_tags(tags_csv) if tags_csv else (read_tags(folder / TAGS_FILE) if (folder / TAGS_FILE).is_file() else {})
    labels = {study_id(p): p for p in (folder / "labels" / "final").glob("*") if p.is_file() and not p.name.startswith(".")}
    from lib.data.datastore.local import is_dicom_folder

    index = _index(folder)
    images = [p for p in folder.iterdir() if p.is_file() and p.name.endswith(IMAGE_SUFFIXES)]
    images += [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "labels"
               and is_dicom_folder(str(p))]  # a DICOM series: its id is the folder's name
    studies = []
    for image in sorted(images):
        sid = image.name if image.is_dir() else study_id(image)
        if sid not in labels:
            continue
        entry = index.get(sid, {})
        info = entry.get("labels", {}).get("final", {}).get("info", {}) or {}
        study = LabelledStudy(sid, str(image), str(labels[sid]), dict(info))
        studies.append(_tag(study, tags, entry.get("image", {}).get("info", {}) or {}))
    return studies


def datastore_studies(datastore, tags: dict | None = None) -> list[LabelledStudy]:
    """Labelled images of any MONAI Label datastore (local, DICOMweb), fetched as it serves them."""
    studies = []
    for sid in sorted(datastore.get_labeled_images()):
        label_id = datastore.get_label_by_image_id(sid, "final") or sid
        info = datastore.get_label_info(label_id, "final") or {}
        study = LabelledStudy(sid, datastore.get_image_uri(sid), datastore.get_label_uri(label_id, "final"), dict(info))
        studies.append(_tag(study, tags or {}, datastore.get_image_info(sid) or {}))
    return studies


def dicomweb_studies(url: str, cache: Path, tags_csv=None) -> list[LabelledStudy]:
    """MR series of a DICOMweb server that a DICOM SEG references, with the newest such SEG.

    Login as for ``serve --dicomweb`` (``MONAI_LABEL_DICOMWEB_USERNAME`` / ``_PASSWORD``, else
    the password ``scripts/orthanc.sh`` keeps); an unreachable PACS or a refused login is a
    ``UserError``. The SEG's segment numbers become muscles by their
    *names* (``SegmentLabel``), whatever their order; series and SEG are fetched into ``cache``.
    """
    from monailabel.config import settings
    from pydicom import Dataset

    from lib.data.dicom.dicomweb import check_pacs, dicomweb_client, dicomweb_login
    from lib.data.dicom.dicomweb_datastore import dicomweb_datastore
    from lib.settings import apply_server_defaults

    apply_server_defaults()  # the MR search filter (MONAI Label's default lists CT only)
    login = dicomweb_login()  # as `serve --dicomweb`: environment, else scripts/orthanc.sh's password
    if login:
        settings.MONAI_LABEL_DICOMWEB_USERNAME, settings.MONAI_LABEL_DICOMWEB_PASSWORD = login
    check_pacs(dicomweb_client(url, login), settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER)  # wrong URL/login: one line
    settings.MONAI_LABEL_DICOMWEB_CACHE_PATH = str(cache)
    store = dicomweb_datastore(url)
    client, images = store._client, set(store.list_images())
    newest: dict[str, tuple[str, Dataset]] = {}
    for found in client.search_for_series(search_filters={"Modality": "SEG"}):
        seg = Dataset.from_json(found)
        meta = Dataset.from_json(client.retrieve_series_metadata(str(seg.StudyInstanceUID), str(seg.SeriesInstanceUID))[0])
        referenced = meta.get("ReferencedSeriesSequence")
        image_id = str(referenced[0].SeriesInstanceUID) if referenced else ""
        when = f"{meta.get('SeriesDate', '')}{meta.get('SeriesTime', '')}"
        if image_id in images and (image_id not in newest or when > newest[image_id][0]):
            newest[image_id] = (when, meta)
    tags = read_tags(tags_csv) if tags_csv else {}
    studies = []
    for image_id, (_, meta) in sorted(newest.items()):
        names = {str(s.SegmentLabel): int(s.SegmentNumber) for s in meta.get("SegmentSequence", [])}
        image = store.get_image_uri(image_id)  # first: the cache indexes the label under its image
        label = store.get_label_uri(str(meta.SeriesInstanceUID), "final", image_id)
        study = LabelledStudy(image_id, image, label, {"label_info": names})
        studies.append(_tag(study, tags, store.get_image_info(image_id) or {}))
    return studies


def labelled_studies(source: str, cache: Path, tags_csv=None) -> list[LabelledStudy]:
    """The labelled studies of a folder or DICOMweb URL; a ``UserError`` when there are none."""
    if str(source).startswith(("http://", "https://")):
        studies = dicomweb_studies(str(source), cache, tags_csv)
    else:
        studies = local_studies(source, tags_csv)
    if not studies:
        raise UserError(f"no labelled studies in {source}: evaluation needs images with a labels/final label")
    return studies
