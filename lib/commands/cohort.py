"""``python main.py infer DIR|LIST|URL``: the many-studies half of the ``infer`` command.

    python main.py infer studies/ [--out studies_muscles/]
    python main.py infer cohort.txt --part-id 0 --num-parts 4 --device cuda:0 --out results/
    python main.py infer "http://127.0.0.1:8042/dicom-web?BodyPartExamined=LEG" --out results/
    python main.py infer dixon/ --fat-fraction _water _fat
    python main.py merge-cohort results/

``infer`` takes this path when its IMAGE is a folder of studies, a list file or a DICOMweb URL
(``lib.cohort.sources.is_cohort_source``); a NIfTI file or a folder of DICOM files stays one
image. Output folder (``--out``, default ``<DIR>_muscles`` beside the folder or list):
``labels/``, ``records/``, ``measurements.csv``, ``cohort.json``, ``errors.csv``
(``lib.cohort``). Exit code 0 when every study is done, 1 when some failed (they are in
``errors.csv``; a rerun tries them again), 2 for a wrong command line.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

from lib.errors import UserError

SINGLE_ONLY = (("model", "muscle", "--model"), ("region", "auto", "--region"), ("echo", 0, "--echo"),
               ("no_cleanup", False, "--no-cleanup"), ("csv", None, "--csv"), ("json", None, "--json"))


def add_arguments(parser) -> None:
    group = parser.add_argument_group(
        "many studies", "when IMAGE is a folder of studies, a list file (.txt/.csv/.list: one path a line) or a "
                        "DICOMweb URL (with a QIDO query: URL?BodyPartExamined=LEG); --out is then the output folder")
    group.add_argument("--part-id", type=int, default=0,
                       help="which shard to run, 0..N-1: the studies whose index in sorted-id order is PART-ID modulo N")
    group.add_argument("--num-parts", type=int, default=1, help="N, the number of shards (default 1)")
    group.add_argument("--fat-fraction", nargs=2, metavar=("WATER", "FAT"),
                       help="Dixon pairs by name tags: segment the images named with WATER, add the mean fat "
                            "fraction F/(W+F) per muscle from the image named with FAT instead (same folder)")
    group.add_argument("--threads", type=int, help="CPU threads of this process (default: all cores)")
    group.add_argument("--redo", action="store_true", help="segment every study again, even those already done")


def is_cohort(args) -> bool:
    from lib.cohort.sources import is_cohort_source

    return is_cohort_source(args.image)


def default_out(source: str) -> Path:
    if str(source).startswith(("http://", "https://")):
        raise UserError("a DICOMweb cohort needs --out FOLDER for its labels and tables")
    path = Path(source).resolve()
    stem = path.name.rsplit(".", 1)[0] if path.is_file() else path.name
    return path.parent / f"{stem}_muscles"


def check_arguments(args) -> None:
    for key, default, flag in SINGLE_ONLY:
        if getattr(args, key, default) != default:
            raise UserError(f"{flag} is for one image; a cohort runs the muscle model with the default options and "
                            "writes its tables to --out")
    if args.num_parts < 1 or not 0 <= args.part_id < args.num_parts:
        raise UserError(f"--part-id must be in 0..{args.num_parts - 1} for --num-parts {args.num_parts}")
    if args.threads is not None and args.threads < 1:
        raise UserError("--threads must be at least 1")


def keep_freed_memory() -> bool:
    """Keep memory that torch and numpy free inside the process (glibc): each volume allocates
    buffers of tens of MB again, which glibc hands back to the kernel at every ``free`` (above its
    mmap threshold) and the kernel zeroes again at the next touch. Measured here on 6 compact
    432 x 432 x 52 volumes: 3.0 M page faults, 6.7 s of system time and 28.6 s in the loop
    before; 0.3 M, 1.8 s and 23.4 s after (-18 %), peak memory 1.66 -> 1.84 GB: the process keeps
    what it once needed until it ends (a batch process). Returns whether it could (glibc only)."""
    import ctypes
    import ctypes.util
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # malloc.h
    return all([libc.mallopt(m_mmap_threshold, 1 << 30), libc.mallopt(m_trim_threshold, (1 << 31) - 1),
                libc.mallopt(m_top_pad, 64 << 20)])


def progress_bar(items, desc: str, total: int, unit: str):
    from tqdm import tqdm

    return tqdm(items, desc=desc, total=total, unit=unit, file=sys.stderr, dynamic_ncols=True,
                disable=total == 0, smoothing=0.1)


def run(args) -> int:
    import torch
    from tqdm import tqdm

    from lib.cohort.run import CohortRun, run_studies
    from lib.cohort.sources import dicomweb_client_for, find_studies, is_url, pair_dixon, shard
    from lib.cohort.tables import write_tables
    from lib.inference.batching import resolve_device
    from lib.models.store import ModelStore, has_weights
    from lib.options import parse_slices
    from lib.paths import APP_MODEL_DIR

    check_arguments(args)
    keep_freed_memory()
    out = Path(args.out) if args.out else default_out(args.image)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    if args.threads:
        torch.set_num_threads(args.threads)
    weights = ModelStore(APP_MODEL_DIR).weights("live")
    if not has_weights(weights):
        raise UserError("the muscle model has no weights: run `python main.py pretrain`")
    studies = find_studies(args.image, exclude=[out])
    left_out = 0
    if args.fat_fraction:
        studies, left_out = pair_dixon(studies, *args.fat_fraction)
    if not studies:
        raise UserError(f"no studies in {args.image}" + (f" named with {args.fat_fraction[0]!r}" if args.fat_fraction else ""))
    mine = shard(studies, args.part_id, args.num_parts)
    cohort = CohortRun(out, weights, resolve_device(args.device), args.split_sides, parse_slices(args.slices),
                       tuple(args.fat_fraction) if args.fat_fraction else None)
    part = f" (part {args.part_id} of 0..{args.num_parts - 1}: {len(mine)})" if args.num_parts > 1 else ""
    dixon = f", {left_out} image(s) left out: named with neither tag" if args.fat_fraction else ""
    version = hashlib.sha256(cohort.model_version.encode()).hexdigest()[:12]  # cohort.json has it in full
    print(f"cohort: {len(studies)} studies in {args.image}{part}{dixon}; device {cohort.device}, "
          f"model version {version}", flush=True)
    client = dicomweb_client_for(args.image) if is_url(str(args.image)) else None
    start = time.time()
    result = run_studies(mine, cohort, progress_bar, client, redo=args.redo,
                         on_error=lambda message: tqdm.write(f"failed: {message}", file=sys.stderr))
    seconds = time.time() - start
    run_info = {"source": str(args.image), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "model_version": cohort.model_version, "weights": cohort.weight_files, "settings": cohort.settings,
                "device": cohort.device,
                "counts": {"skipped": result["skipped"], "segmented": result["segmented"]},
                "seconds": round(seconds, 1)}
    paths = write_tables(result["records"], out, run_info, args.part_id, args.num_parts)
    rate = result["segmented"] / seconds * 60 if seconds > 0 and result["segmented"] else 0.0
    print(f"cohort: {result['segmented']} segmented, {result['skipped']} already done, {result['failed']} failed "
          f"in {seconds:.1f} s ({rate:.1f} studies/min)")
    print(f"measurements: {paths['measurements']}")
    print(f"cohort: {paths['cohort']}")
    print(f"errors: {paths['errors']} ({result['failed']})")
    if args.num_parts > 1:
        print(f"when every part is done: python main.py merge-cohort {out}")
    return 1 if result["failed"] else 0
