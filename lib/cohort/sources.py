"""The studies of a cohort: a folder, a list file or a DICOMweb query; their ids, shards and hashes.

**A folder** (searched recursively; hidden entries, MONAI Label's ``labels/`` folder at the top
and the run's own output folder are skipped): every image file (``.nii.gz``, ``.nii``,
``.nrrd``, ``.mha``, ``.mhd``) is a study, and every folder below it that holds no image file
but other files (documents such as ``.json``, ``.csv``, ``.txt``, ``.md``, ``.pdf`` aside) is a
DICOM series study. A DICOM folder is read by the loader's series and echo rule (one series per folder, the
first echo's magnitude images); a folder that cannot be read is a failed study, not a crash.

**A list file** (``.txt``, ``.csv``, ``.tsv``, ``.list``, ``.lst``): one image file or DICOM
series folder per line, relative to the list file's folder (or absolute); blank lines and lines
starting with ``#`` are skipped.

**A DICOMweb URL** (``http(s)://host/dicom-web``), optionally with a QIDO-RS query:
``http://127.0.0.1:8042/dicom-web?StudyDate=20240101-20241231&BodyPartExamined=LEG``. Each
series found (``Modality=MR`` unless the query names another) is a study, its id the
SeriesInstanceUID. The login is the one ``main.py upload`` uses (``lib.data.dicom.dicomweb``).

**Ids** come from the path relative to the folder (the list file's entries: relative to their
common folder), image suffix removed, ``/`` written ``__``: ``sub-01/anat/t1.nii.gz`` is
``sub-01__anat__t1``. They name the label file and the record, and their sorted order is the
order shards are cut from (``shard``).

**Dixon pairs** (``pair_dixon``): with ``--fat-fraction WATER FAT``, a study whose file or
folder name contains WATER is the water image, segmented as any study; its fat image is the
entry of the same folder whose name is the same with the last WATER replaced by FAT
(``sub01_water.nii.gz`` -> ``sub01_fat.nii.gz``). Names with FAT are partners, not studies;
names with neither are left out. Both images must share one grid (Dixon maps of one scan do).

**The input hash** (``input_hash``) is the SHA-256 of the study's bytes: the file, every file of
a DICOM folder (with its name), the fat image of a Dixon pair; for DICOMweb the sorted
SOPInstanceUIDs of the series (the PACS is asked, nothing downloaded).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from lib.errors import UserError
from lib.identifiers import check_identifier

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
LIST_SUFFIXES = (".txt", ".csv", ".tsv", ".list", ".lst")
DOCUMENT_SUFFIXES = (".json", ".csv", ".tsv", ".txt", ".md", ".pdf", ".log", ".xml", ".html", ".htm", ".png",
                     ".jpg", ".jpeg", ".raw", ".zraw", ".py", ".sh", ".yaml", ".yml", ".ini", ".bval", ".bvec")
SKIPPED_TOP_FOLDERS = ("labels",)  # MONAI Label's datastore layout: <studies>/labels/<tag>/
DEFAULT_QUERY = {"Modality": "MR"}
UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


@dataclass
class Study:
    """One study of a cohort.

    id: the study's name in every output; source: its file or DICOM folder, or for DICOMweb the
    server URL; kind: ``file``, ``dicom`` or ``dicomweb``; fat: the fat image of a Dixon pair
    (``""``: none); info: what the cohort table shows about it (DICOMweb: patient, series).
    """

    id: str
    source: str
    kind: str
    fat: str = ""
    info: dict = field(default_factory=dict)


def is_url(source: str) -> bool:
    return str(source).startswith(("http://", "https://"))


def image_suffix(name: str) -> str:
    return next((s for s in IMAGE_SUFFIXES if name.lower().endswith(s)), "")


def is_cohort_source(source) -> bool:
    """Whether ``main.py infer SOURCE`` means many studies: a DICOMweb URL, a list file, or a
    folder that holds an image file or a subfolder (a folder of only files is one DICOM series)."""
    if is_url(str(source)):
        return True
    path = Path(source)
    if path.is_file():
        return path.name.lower().endswith(LIST_SUFFIXES)
    if not path.is_dir():
        return False
    for entry in os.scandir(path):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() or image_suffix(entry.name):
            return True
    return False


def make_id(path: Path, root: Path) -> str:
    """The study id of ``path`` below ``root`` (module doc)."""
    try:
        parts = list(path.relative_to(root).parts)
    except ValueError:
        parts = [path.name]
    if not parts:
        parts = [path.name]
    suffix = image_suffix(parts[-1])
    if suffix:
        parts[-1] = parts[-1][: -len(suffix)]
    name = "__".join(UNSAFE.sub("_", p) for p in parts).lstrip(".") or "study"
    return name[:200]


def _is_document(name: str) -> bool:
    return name.lower().endswith(DOCUMENT_SUFFIXES) or name.upper() == "DICOMDIR"


def folder_studies(root, exclude=()) -> list[Study]:
    """Every study below ``root`` (module doc); ``exclude``: folders not to enter (the output)."""
    root = Path(root)
    skip = {os.path.realpath(p) for p in exclude}
    studies = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not d.endswith(".unused")
                             and os.path.realpath(here / d) not in skip
                             and not (here == root and d in SKIPPED_TOP_FOLDERS))
        files = [f for f in sorted(filenames) if not f.startswith(".")]
        images = [f for f in files if image_suffix(f)]
        studies += [Study(make_id(here / f, root), str(here / f), "file") for f in images]
        if here != root and not images and any(not _is_document(f) for f in files):
            studies.append(Study(make_id(here, root), str(here), "dicom"))
    return studies


def list_studies(list_file) -> list[Study]:
    """The studies a list file names (module doc); a missing entry fails as a study, later."""
    list_file = Path(list_file)
    try:
        lines = list_file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{list_file}: not a readable list of studies ({exc})") from None
    paths = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            path = Path(line).expanduser()
            paths.append(path if path.is_absolute() else list_file.parent / path)
    if not paths:
        raise UserError(f"{list_file}: names no study (one image file or DICOM folder per line)")
    paths = [Path(os.path.normpath(p)) for p in paths]
    root = Path(os.path.commonpath([str(p.parent) for p in paths]))
    return [Study(make_id(p, root), str(p), "file" if image_suffix(p.name) or p.is_file() else "dicom")
            for p in paths]


def split_url(url: str) -> tuple[str, dict]:
    """(DICOMweb base URL, QIDO filters) of ``http://host/dicom-web?Key=value&...``."""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    return base, {**DEFAULT_QUERY, **dict(parse_qsl(parts.query, keep_blank_values=False))}


def dicomweb_client_for(url: str):
    """A logged-in DICOMweb client of the URL's server (``lib.data.dicom.dicomweb``)."""
    from lib.data.dicom.dicomweb import dicomweb_client, dicomweb_login

    return dicomweb_client(split_url(url)[0], dicomweb_login())


def dicomweb_studies(url: str) -> list[Study]:
    """The series a DICOMweb query finds, one study each (module doc)."""
    from pydicom import Dataset

    from lib.data.dicom.dicomweb import check_pacs

    base, query = split_url(url)
    client = dicomweb_client_for(url)
    check_pacs(client, {**query, "limit": 1})  # an unreachable server or a refused login: one line
    studies = []
    for found in client.search_for_series(search_filters=query, get_remaining=True):
        ds = Dataset.from_json(found)
        uid = str(ds.get("SeriesInstanceUID", ""))
        if not uid:
            continue
        info = {"study_uid": str(ds.get("StudyInstanceUID", "")), "series_uid": uid,
                "patient_id": str(ds.get("PatientID", "")), "series_description": str(ds.get("SeriesDescription", "")),
                "series_number": str(ds.get("SeriesNumber", ""))}
        studies.append(Study(UNSAFE.sub("_", uid), base, "dicomweb", info=info))
    return studies


def find_studies(source, exclude=()) -> list[Study]:
    """The studies of a folder, list file or DICOMweb URL, sorted by id; ids must be unique."""
    if is_url(str(source)):
        studies = dicomweb_studies(str(source))
    elif Path(source).is_file():
        studies = list_studies(source)
    elif Path(source).is_dir():
        studies = folder_studies(source, exclude)
    else:
        raise UserError(f"no such file, folder or URL: {source}")
    seen: dict[str, str] = {}
    for study in studies:
        problem = check_identifier("study id", study.id)
        if problem:
            raise UserError(problem)
        if study.id in seen:
            raise UserError(f"two studies would share the id {study.id!r}: {seen[study.id]} and {study.source} "
                            "(rename one)")
        seen[study.id] = study.source
    return sorted(studies, key=lambda s: s.id)


def pair_dixon(studies: list[Study], water: str, fat: str) -> tuple[list[Study], int]:
    """Dixon pairs by name (module doc): the water studies with their fat image, and how many
    studies were left out (neither tag: not part of a pair)."""
    if not water or not fat or water == fat:
        raise UserError("--fat-fraction needs two different name tags, e.g. --fat-fraction _water _fat")
    if any(s.kind == "dicomweb" for s in studies):
        raise UserError("--fat-fraction pairs files or folders by name; it does not apply to a DICOMweb query")
    paired, left_out = [], 0
    for study in studies:
        name = Path(study.source).name
        if water in name:
            head, _, tail = name.rpartition(water)
            paired.append(Study(study.id, study.source, study.kind, str(Path(study.source).with_name(head + fat + tail)),
                                dict(study.info)))
        elif fat not in name:
            left_out += 1
    return paired, left_out


def shard(studies: list[Study], part: int, parts: int) -> list[Study]:
    """Part ``part`` (0-based) of ``parts``: the studies whose index in id order is ``part``
    modulo ``parts`` (as nnU-Net's ``-part_id``/``-num_parts``): every study in exactly one part,
    parts within one study of each other in size."""
    if parts < 1 or not 0 <= part < parts:
        raise UserError(f"--part-id must be in 0..{parts - 1} for --num-parts {parts} (got {part})")
    ordered = sorted(studies, key=lambda s: s.id)
    return ordered[part::parts]


def _hash_file(digest, path: Path) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)


def input_hash(study: Study, client=None) -> str:
    """SHA-256 of what the study is made of (module doc); ``UserError`` when it cannot be read."""
    digest = hashlib.sha256()
    try:
        if study.kind == "dicomweb":
            found = client.search_for_instances(study.info["study_uid"], study.info["series_uid"],
                                                fields=["SOPInstanceUID"], get_remaining=True)
            uids = sorted(str(i.get("00080018", {}).get("Value", [""])[0]) for i in found)
            digest.update("\n".join(uids).encode())
        else:
            path = Path(study.source)
            if path.is_dir():
                for file in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
                    digest.update(file.name.encode() + b"\0")
                    _hash_file(digest, file)
            else:
                _hash_file(digest, path)
            if study.fat:
                digest.update(b"\0fat\0")
                fat = Path(study.fat)
                for file in (sorted(p for p in fat.iterdir() if p.is_file()) if fat.is_dir() else [fat]):
                    _hash_file(digest, file)
    except FileNotFoundError as exc:
        raise UserError(f"{study.id}: no such file or folder: {exc.filename}") from None
    except OSError as exc:
        raise UserError(f"{study.id}: cannot read {getattr(exc, 'filename', '') or study.source} ({exc.strerror})") from None
    except Exception as exc:  # the PACS: connection or HTTP errors
        raise UserError(f"{study.id}: the DICOMweb server did not list the series ({str(exc).splitlines()[0]})") from None
    return digest.hexdigest()
