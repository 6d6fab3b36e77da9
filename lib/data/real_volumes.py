"""The unlabelled real volumes of the shared data and which of their slices are thigh or leg.

``<shared data>/real_volumes`` holds five real scans from other sites (see its README).
``bench/real_regions.csv`` gives each slice range its region, written after a person looked at
the slices: ``thigh`` and ``leg`` are certain; ``knee``, ``ankle`` and ``none`` are not. The
benchmark scores the classifier on the certain slices; pretraining pseudo-labels the certain
slices of one region (``lib.training.self_training``). Slice numbers are the file's own z, which
is the model grid's only when the file's third axis points to the head (``z_points_to_head``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib

from lib.paths import ROOT, SHARED_DATA

REAL_VOLUMES = SHARED_DATA / "real_volumes"
REGIONS_CSV = ROOT / "bench" / "real_regions.csv"
CERTAIN = ("thigh", "leg")


def slice_regions(n_slices: dict[str, int], table: Path = REGIONS_CSV) -> dict[str, list[str | None]]:
    """Per volume, the region the table gives each of its ``n_slices`` slices (None: not listed)."""
    out = {name: [None] * n for name, n in n_slices.items()}
    with open(table, newline="") as f:
        for row in csv.DictReader(f):
            if row["volume"] in out:
                for k in range(int(row["first_slice"]), int(row["last_slice"]) + 1):
                    out[row["volume"]][k] = row["region"]
    return out


def certain_slices(region: str, folder: Path = REAL_VOLUMES, table: Path = REGIONS_CSV) -> dict[Path, list[int]]:
    """{volume file: its slices certainly of ``region``} for the volumes of ``folder`` that have any."""
    if not folder.is_dir() or not table.is_file():
        return {}
    files = {p.name.removesuffix(".nii.gz"): p for p in sorted(folder.glob("*.nii.gz"))}
    regions = slice_regions({name: nib.load(p).shape[2] for name, p in files.items()}, table)
    out = {files[name]: [k for k, r in enumerate(rs) if r == region] for name, rs in regions.items()}
    return {path: slices for path, slices in out.items() if slices}


def z_points_to_head(path: Path) -> bool:
    """True when the file's slice numbers are the model grid's (its third axis points to the head)."""
    return nib.aff2axcodes(nib.load(path).affine)[2] == "S"
