"""``python main.py evaluate``: the paper's tables on any labelled datastore.

    python main.py evaluate --studies DIR|URL [--model live|shipped|VERSION] [--out report/]
    python main.py generate --test-set --out data/testset && python main.py evaluate --studies data/testset

Every labelled slice of the datastore (local folder or DICOMweb URL) goes through the routed
pipeline; the report (Markdown, figures, CSV and JSON; see ``lib/evaluation/report.py``) is
written to ``--out``. Severity groups come from ``--tags`` (a CSV with ``id``, ``severity``,
``subject``; ``<studies>/tags.csv`` by default) or the image info. A datastore without labels
is an error (exit code 2).
"""

from __future__ import annotations

from pathlib import Path

from lib.errors import UserError


def add_arguments(parser):
    parser.add_argument("--studies", required=True, help="labelled datastore: a folder or a DICOMweb URL")
    parser.add_argument("--model", default="live",
                        help="live (default), shipped, or kept versions: v3, segmentation_thigh:v3,classifier:v2")
    parser.add_argument("--model-dir", help="the server's live model folder (default apps/muscle/model)")
    parser.add_argument("--out", default="report", help="report folder (default: report/)")
    parser.add_argument("--tags", help="CSV of id,severity,subject (default: <studies>/tags.csv if present)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")


def run(args) -> int:
    from lib.evaluation.run import evaluate

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    summary = evaluate(args.studies, out, args.model, args.model_dir, args.tags, args.device)
    head = summary["headline"]
    print(f"thigh Dice {head['thigh']['dice']:.4f} ({head['thigh']['slices']} slices), "
          f"leg Dice {head['leg']['dice']:.4f} ({head['leg']['slices']} slices), "
          f"classifier accuracy {summary['classifier']['accuracy']:.4f}")
    print(f"report: {out / 'report.md'}")
    return 0
