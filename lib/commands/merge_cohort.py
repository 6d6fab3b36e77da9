"""``python main.py merge-cohort OUT [OUT ...]``: join the tables of a sharded ``infer`` run.

    python main.py merge-cohort results/                       # every shard wrote into results/
    python main.py merge-cohort shard0/ shard1/ --out results/ # shards with folders of their own

Reads each part's ``cohort.part-<i>-of-<n>.json``, ``measurements.part-...csv`` and
``errors.part-...csv`` and writes ``measurements.csv``, ``cohort.json`` and ``errors.csv``
(``lib.cohort.tables``). A missing part, a part found twice, or parts made with other weights or
options are an error (exit code 2) unless ``--partial``. Exit code 1 when some studies failed.
"""

from __future__ import annotations


def add_arguments(parser):
    parser.add_argument("folders", nargs="+", help="output folder(s) of the shards")
    parser.add_argument("--out", help="where the merged tables go (default: the first folder)")
    parser.add_argument("--partial", action="store_true", help="merge even if some parts are missing")


def run(args) -> int:
    from pathlib import Path

    from lib.cohort.tables import merge_parts, table_names

    merged = merge_parts(args.folders, args.out, args.partial)
    out = Path(args.out or args.folders[0])
    counts = merged["counts"]
    missing = f"; parts {merged['missing_parts']} missing" if merged["missing_parts"] else ""
    print(f"merged {len(merged['merged_parts'])} part(s){missing}: {counts.get('studies', 0)} studies, "
          f"{counts.get('done', 0)} done, {counts.get('failed', 0)} failed")
    for kind, name in table_names().items():
        print(f"{kind}: {out / name}")
    return 1 if counts.get("failed") else 0
