"""One volume out of a DICOM series: the first echo's magnitude images, with geometry checked.

A multi-echo gradient-echo series often holds every echo, and magnitude, phase, real and
imaginary images, at the same slice positions under one SeriesInstanceUID (a GE series of
2 echoes x 4 image types x 32 positions was met). Stacked as they are, they make no volume:
MONAI Label's converter and OHIF both fail on it. The network input is the first echo's
magnitude (SPEC §2), so that is what is kept, and ``Selection.description`` says so.

The image type comes from ImageType (``M``/``MAGNITUDE``, ``P``/``PHASE``, ``R``/``REAL``,
``I``/``IMAGINARY``, Philips' ``M_FFE``...), else from GE's private tag (0043,102F) (0
magnitude, 1 phase, 2 real, 3 imaginary), else magnitude is assumed. The echo is
EchoNumbers, else the rank of EchoTime. A series whose kept images lack position,
orientation or pixel spacing, or still repeat a position, raises ``UserError`` naming it.

One rule for every way a series arrives: a PACS series (``lib.data.dicom.dicomweb_datastore``),
a DICOM folder given to ``main.py infer`` and a DICOM folder in a local studies folder (both
through ``lib.transforms.loading``). A folder holding several series (several
SeriesInstanceUIDs: a whole study exported into one folder) is refused with a one-line error
listing them (number, description, image count, UID): which one to segment is the user's
choice, not a guess (a localiser, a T1 and two Dixon series all look like volumes).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pydicom

from lib.errors import UserError

KINDS = {"M": "magnitude", "MAGNITUDE": "magnitude", "P": "phase", "PHASE": "phase", "R": "real",
         "REAL": "real", "I": "imaginary", "IMAGINARY": "imaginary"}
GE_KIND = {0: "magnitude", 1: "phase", 2: "real", 3: "imaginary"}
GEOMETRY = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")


def image_kind(ds: pydicom.Dataset) -> str:
    """magnitude / phase / real / imaginary of one image (module doc)."""
    for token in [str(v).upper() for v in (ds.get("ImageType") or [])[2:]]:
        kind = KINDS.get(token) or KINDS.get(token.split("_")[0])  # Philips: M_FFE, P_SE ...
        if kind:
            return kind
    private = ds.get((0x0043, 0x102F))
    if private is not None:
        try:
            return GE_KIND.get(int(private.value), "magnitude")
        except (TypeError, ValueError):
            pass
    return "magnitude"


def echo_number(ds: pydicom.Dataset) -> float:
    """EchoNumbers (its first value), else EchoTime in ms (ranked later), else 1."""
    echo = ds.get("EchoNumbers")
    if echo not in (None, ""):
        return float(echo[0] if isinstance(echo, pydicom.multival.MultiValue) else echo)
    return 1000.0 + float(ds.get("EchoTime") or 0.0)  # after any numbered echo; ordered by time


@dataclass
class Selection:
    """The files that make the volume, the ones left out, and a sentence saying which."""

    kept: list[Path]
    dropped: list[Path]
    description: str


def check_one_series(headers: list[tuple[Path, pydicom.Dataset]], name: str) -> None:
    """``UserError`` listing the series when the files belong to more than one (module doc)."""
    groups: dict[str, list[pydicom.Dataset]] = {}
    for _, ds in headers:
        groups.setdefault(str(ds.get("SeriesInstanceUID", "") or "(no SeriesInstanceUID)"), []).append(ds)
    if len(groups) < 2:
        return

    def number(item):  # by series number, then description, then UID
        first = item[1][0]
        try:
            return int(first.get("SeriesNumber")), str(first.get("SeriesDescription", "")), item[0]
        except (TypeError, ValueError):
            return 10**9, str(first.get("SeriesDescription", "")), item[0]

    listed = []
    for uid, datasets in sorted(groups.items(), key=number):
        first = datasets[0]
        label = f"#{first.get('SeriesNumber')} " if first.get("SeriesNumber") not in (None, "") else ""
        label += repr(str(first.get("SeriesDescription") or "(no description)"))
        listed.append(f"{label} ({len(datasets)} images, {uid})")
    shown = "; ".join(listed[:12]) + (f"; and {len(listed) - 12} more" if len(listed) > 12 else "")
    raise UserError(f"series {name}: the folder holds {len(groups)} DICOM series, not one: {shown}. "
                    "Put the series to segment in a folder of its own")


def select_volume(folder, series: str = "", echo: int = 0) -> Selection:
    """Choose the first echo's magnitude images of the DICOM files in ``folder`` (module doc);
    ``echo`` (0-based) picks a later echo's magnitude instead."""
    headers = []
    for path in sorted(Path(folder).iterdir()):
        if path.is_file():
            try:
                headers.append((path, pydicom.dcmread(path, stop_before_pixels=True)))
            except (pydicom.errors.InvalidDicomError, OSError):
                continue
    name = series or Path(folder).name
    if not headers:
        raise UserError(f"series {name}: no readable DICOM images in the folder")
    check_one_series(headers, name)
    groups: dict[tuple[float, str], list] = {}
    for path, ds in headers:
        groups.setdefault((echo_number(ds), image_kind(ds)), []).append((path, ds))
    magnitude = sorted(key for key in groups if key[1] == "magnitude")
    if not magnitude:
        raise UserError(f"series {name}: no magnitude images (only {', '.join(sorted({k[1] for k in groups}))})")
    if not 0 <= echo < len(magnitude):
        raise UserError(f"series {name}: echo {echo} requested but the series has {len(magnitude)} "
                        "magnitude echo(es) (0-based)")
    key = magnitude[echo]
    chosen = groups[key]
    missing = [tag for tag in GEOMETRY if any(tag not in ds for _, ds in chosen)]
    if missing:
        raise UserError(f"series {name}: images lack {', '.join(missing)}: no volume can be built from it")
    repeats = Counter(tuple(round(float(v), 3) for v in ds.ImagePositionPatient) for _, ds in chosen)
    if max(repeats.values()) > 1:
        raise UserError(f"series {name}: several images at one slice position that neither echo nor image "
                        "type tells apart (mixed series?)")
    kept = [path for path, _ in chosen]
    kept_set = set(kept)
    dropped = [path for path, _ in headers if path not in kept_set]
    if not dropped:
        return Selection(kept, [], f"all {len(kept)} images")
    echoes = sorted({k[0] for k in groups})
    which = chosen[0][1].get("EchoNumbers") or f"TE {chosen[0][1].get('EchoTime', '?')} ms"
    kinds = ", ".join(sorted({k[1] for k in groups}))
    description = (f"echo {which} magnitude: {len(kept)} of {len(headers)} images (series holds "
                   f"{len(echoes)} echo(es) of {kinds})")
    return Selection(kept, dropped, description)
