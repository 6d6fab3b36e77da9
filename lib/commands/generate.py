"""``python main.py generate``: write synthetic thigh/leg phantom studies as a MONAI Label datastore.

    python main.py generate --out data/phantoms --region both --subjects 4 --severity mixed
    python main.py generate --embedded      # rebuild the default datastore studies/

Layout: ``OUT/<id>.nii.gz`` images and, unless ``--annotate none``, labels in
``OUT/labels/final/<id>.nii.gz`` (``sparse``: the 7 thigh / 3 leg slices an annotator draws,
SPEC §2, other slices 0; ``all``: every slice). Subject i uses seed ``--seed + i``; with
``--region both`` each subject gets a thigh and a leg study; ``--severity mixed`` cycles
healthy, mild, severe. ``OUT/tags.csv`` records each study's subject and severity (what
``python main.py evaluate`` groups by). Every argument is checked before anything is written.

    python main.py generate --test-set --out data/testset   # held-out evaluation set

``--test-set``: seeds from the test range that training and model selection never see
(20000 on, ``lib.training.pretrain``), mild and severe subjects in turn, every slice labelled.
"""

from __future__ import annotations

import math
from pathlib import Path

import csv

from lib import labels as L
from lib.data.phantoms.embedded import ANNOTATIONS, StudySpec, build_embedded, write_study
from lib.data.phantoms.phantom import SEVERITIES
from lib.errors import UserError

DEFAULT_SLICES = {"thigh": 52, "leg": 36}  # SPEC §2 acquisition matrices
REGION_CHOICES = (*L.REGIONS, "both")
SEVERITY_CHOICES = (*SEVERITIES, "mixed")
TEST_SET = {"seed": 20000, "severities": ("mild", "severe"), "annotate": "all"}  # SPEC §6's test groups


def add_arguments(parser):
    parser.add_argument("--out", metavar="DIR", help="datastore folder to write (created if missing)")
    parser.add_argument("--region", default="both", help=f"{' | '.join(REGION_CHOICES)} (default both)")
    parser.add_argument("--subjects", type=int, default=4, help="number of subjects (default 4)")
    parser.add_argument("--slices", type=int, default=None,
                        help="axial slices per volume (default 52 thigh, 36 leg)")
    parser.add_argument("--severity", default="mixed",
                        help=f"fat replacement: {' | '.join(SEVERITY_CHOICES)} (default mixed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first subject (default 0)")
    parser.add_argument("--annotate", default="sparse", help=f"{' | '.join(ANNOTATIONS)} (default sparse)")
    parser.add_argument("--spacing", type=float, nargs=3, default=(1.04, 1.04, 5.0),
                        metavar=("SX", "SY", "SZ"), help="voxel size in mm (default 1.04 1.04 5)")
    parser.add_argument("--shape", type=int, nargs=2, default=(432, 432), metavar=("NX", "NY"),
                        help="in-plane matrix (default 432 432)")
    parser.add_argument("--embedded", action="store_true",
                        help="rebuild the embedded default datastore studies/ (other options ignored)")
    parser.add_argument("--test-set", action="store_true",
                        help="held-out evaluation set: test-range seeds (20000+), mild and severe in turn, all slices labelled")


def plan(args) -> list[StudySpec]:
    """The studies the arguments ask for; raises UserError for any impossible argument."""
    if args.region not in REGION_CHOICES:
        raise UserError(f"unknown region {args.region!r}: expected one of {', '.join(REGION_CHOICES)}")
    if args.severity not in SEVERITY_CHOICES:
        raise UserError(f"unknown severity {args.severity!r}: expected one of {', '.join(SEVERITY_CHOICES)}")
    if args.annotate not in ANNOTATIONS:
        raise UserError(f"unknown annotation {args.annotate!r}: expected one of {', '.join(ANNOTATIONS)}")
    if args.subjects < 1:
        raise UserError(f"--subjects must be at least 1, got {args.subjects}")
    if args.slices is not None and args.slices < 1:
        raise UserError(f"--slices must be at least 1, got {args.slices}")
    if args.seed < 0:
        raise UserError(f"--seed must be non-negative, got {args.seed}")
    if not all(math.isfinite(s) and s > 0 for s in args.spacing):
        raise UserError(f"--spacing must be three positive sizes in mm, got {' '.join(map(str, args.spacing))}")
    if min(args.shape) < 16:
        raise UserError(f"--shape must be at least 16 x 16 pixels, got {args.shape[0]} x {args.shape[1]}")
    regions = L.REGIONS if args.region == "both" else (args.region,)
    cycle = TEST_SET["severities"] if getattr(args, "test_set", False) else SEVERITIES
    specs = []
    for i in range(args.subjects):
        severity = cycle[i % len(cycle)] if args.severity == "mixed" else args.severity
        for region in regions:
            n_slices = args.slices or DEFAULT_SLICES[region]
            specs.append(StudySpec(region, args.seed + i, severity, n_slices, tuple(args.shape),
                                   tuple(args.spacing), args.annotate))
    return specs


def run(args) -> int:
    if args.embedded:
        written = build_embedded()
        print(f"rebuilt the embedded datastore: {len(written)} files in {written[0].parent}")
        return 0
    if not args.out:
        raise UserError("give --out DIR (or --embedded to rebuild studies/)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    if args.test_set:
        args.seed = TEST_SET["seed"] if args.seed == 0 else args.seed
        args.annotate = TEST_SET["annotate"] if args.annotate == "sparse" else args.annotate
    specs = plan(args)
    labelled = 0
    for spec in specs:
        written = write_study(out, spec)
        labelled += len(written) > 1
        print(f"{spec.id}: {spec.shape[0]}x{spec.shape[1]}x{spec.n_slices}", flush=True)
    write_tags(out / "tags.csv", specs)
    print(f"wrote {len(specs)} studies ({labelled} labelled) to {out}")
    return 0


def write_tags(path: Path, specs: list[StudySpec]) -> None:
    """``id,subject,region,severity`` of every study in the folder (new ones replace old rows)."""
    rows = {}
    if path.is_file():
        with path.open(newline="") as f:
            rows = {r["id"]: r for r in csv.DictReader(f) if r.get("id")}
    for spec in specs:
        rows[spec.id] = {"id": spec.id, "subject": f"s{spec.seed:04d}", "region": spec.region, "severity": spec.severity}
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "subject", "region", "severity"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(sorted(rows.values(), key=lambda r: r["id"]))
