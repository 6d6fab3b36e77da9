"""``python main.py upload``: send studies to a DICOMweb PACS (Orthanc) with STOW-RS.

    python main.py upload studies                        # the embedded NIfTI studies
    python main.py generate --out var/phantoms && python main.py upload var/phantoms
    python main.py upload /path/to/dicom/folder --url http://127.0.0.1:8042/dicom-web
    python main.py upload study.nii.gz --out var/dicom   # write the DICOM series, send nothing

NIfTI files become MR series with correct geometry (``lib/data/dicom/export.py``); folders of
DICOM files are sent as they are, one series at a time. The login comes from the environment
or from ``scripts/orthanc.sh`` (``lib/data/dicom/dicomweb.py``). Everything is read and converted
before anything is sent, so a bad file stops the upload before the PACS changes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lib.errors import UserError

DEFAULT_URL = "http://127.0.0.1:8042/dicom-web"


def add_arguments(parser):
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="NIfTI files, folders of NIfTI files (e.g. studies/) or folders of DICOM files")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"DICOMweb root of the PACS (default {DEFAULT_URL})")
    parser.add_argument("--out", metavar="DIR",
                        help="write the converted series as DICOM files under DIR instead of uploading")


def write_series(out: Path, series) -> int:
    """Each series into ``out/<name>/NNNN.dcm``; returns the number of files written."""
    count = 0
    for name, datasets in series:
        folder = out / name.removesuffix(".gz").removesuffix(".nii").replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        for i, item in enumerate(datasets, start=1):
            if isinstance(item, Path):  # a DICOM file: copied as it is
                shutil.copyfile(item, folder / f"{i:04d}.dcm")
            else:
                item.save_as(folder / f"{i:04d}.dcm", write_like_original=False)
            count += 1
    return count


def run(args) -> int:
    from lib.data.dicom.dicomweb import check_pacs, collect, dicomweb_client, dicomweb_login, upload

    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out {args.out} exists and is not a folder")
    series = collect(args.paths)
    if args.out:
        written = write_series(Path(args.out), series)
        print(f"wrote {len(series)} series ({written} files) to {args.out}")
        return 0
    client = dicomweb_client(args.url, dicomweb_login())
    check_pacs(client, {"Modality": "MR"})  # reachable and the login works, before sending
    for record in upload(client, series):
        print(f"{record['name']}: {record['modality']} series {record['series']} "
              f"({record['instances']} instances)", flush=True)
    print(f"uploaded {len(series)} series to {args.url}")
    return 0
