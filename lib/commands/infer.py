"""``python main.py infer IMAGE``: segment a NIfTI file or a DICOM series folder, no server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lib.commands import cohort
from lib.errors import UserError
from lib.models.catalog import CLASSIFIER, SEGMENTERS

MODELS = ("muscle", *SEGMENTERS, CLASSIFIER)  # the served models (lib/configs)


def add_arguments(parser):
    parser.add_argument("image", help="NIfTI file or DICOM series folder")
    parser.add_argument("--model", choices=MODELS, default="muscle", help="which model (default: muscle)")
    parser.add_argument("--out", help="label file to write (default: <image>_muscles.nii.gz beside it)")
    parser.add_argument("--split-sides", action="store_true", help="per-side labels (<muscle>_right/_left)")
    parser.add_argument("--region", choices=("auto", "thigh", "leg"), default="auto",
                        help="force a region instead of the classifier")
    parser.add_argument("--slices", help="only these slice indices, e.g. 3,7,12")
    parser.add_argument("--echo", type=int, default=0, help="echo of a 4D multi-echo file (default 0)")
    parser.add_argument("--no-cleanup", action="store_true", help="skip the 4-px label clean-up")
    parser.add_argument("--keep-faded-ends", action="store_true",
                        help="also label a 3D slab's faded end slices (skipped by default)")
    parser.add_argument("--csv", help="write the per-muscle measurements as CSV here")
    parser.add_argument("--json", help="write the whole result JSON here")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    cohort.add_arguments(parser)  # IMAGE may also be a folder of studies, a list file or a DICOMweb URL


def default_out(image: Path) -> Path:
    stem = image.name[:-7] if image.name.endswith(".nii.gz") else image.stem
    return image.parent / f"{stem}_muscles.nii.gz"


def run(args) -> int:
    if cohort.is_cohort(args):
        return cohort.run(args)
    from lib.configs import CONFIGS
    from lib.inference.measurements import measurements_csv
    from lib.paths import APP_MODEL_DIR

    image = Path(args.image)
    if not image.exists():
        raise UserError(f"no such file or folder: {image}")
    config = CONFIGS[args.model]()
    config.init(args.model, str(APP_MODEL_DIR), {}, None)
    task = config.infer()
    if not task.is_valid():
        raise UserError(f"model {args.model!r} has no weights: run `python main.py pretrain`")
    request = {"image": str(image.resolve()), "device": args.device, "region": args.region,
               "split_sides": args.split_sides, "slices": args.slices, "echo": args.echo,
               "cleanup": not args.no_cleanup, "skip_faded_ends": not args.keep_faded_ends}
    label_path, result = task(request)
    if label_path:
        out = Path(args.out) if args.out else default_out(image)
        shutil.move(label_path, out)
        print(f"labels: {out}")
    if "measurements" in result and args.csv:
        Path(args.csv).write_text(measurements_csv(result["measurements"]))
        print(f"measurements: {args.csv}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if result.get("volume"):  # a DICOM folder: which of its images were read (lib/transforms/dicom_series.py)
        print(f"volume: {result['volume']}")
    summary = result.get("classification", result)
    if "region" in summary:
        print(f"region: {summary['region']} {summary.get('slice_counts', '')}")
    if result.get("faded_slices"):
        print(f"faded slab ends, not labelled (--keep-faded-ends labels them): slices {result['faded_slices']}")
    return 0
