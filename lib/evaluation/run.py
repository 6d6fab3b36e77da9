"""Evaluate a model on every labelled slice of a datastore and write the report.

    evaluate(source, out, model="live")  ->  summary dict; writes out/report.md and friends

``model``: which weights, as the model store reads it (``lib.models.store.ModelStore.weights``):
``live`` (what the server serves: the live file of ``model_dir`` where training published one,
else the shipped weights), ``shipped`` (``weights/``), or kept versions of ``python main.py
models`` (``segmentation_thigh:v3``, ``v3``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from lib.errors import UserError
from lib.evaluation import figures, report
from lib.evaluation.studies import labelled_studies
from lib.evaluation.study_scores import score_study
from lib.evaluation.summary import summarise
from lib.models.store import ModelStore, has_weights, live_path

logger = logging.getLogger(__name__)


def report_dir(model_dir) -> Path:
    """Where the server keeps its last evaluation report (scoring method ``evaluation``)."""
    return Path(model_dir) / "evaluation"


def muscle_weights(model: str, model_dir=None) -> dict[str, list[str]]:
    """The candidates of every network for ``model`` (see the module doc); a ``UserError`` when a
    network has no weights at all."""
    weights = ModelStore(model_dir).weights(model)
    if not has_weights(weights):
        raise UserError("no weights for the muscle pipeline: run `python main.py pretrain`")
    return weights


def evaluate(source: str, out, model: str = "live", model_dir=None, tags_csv=None, device: str = "cpu",
             progress=print) -> dict:
    """Score every labelled slice of ``source`` (folder or DICOMweb URL); write the report to ``out``."""
    weights = muscle_weights(model, model_dir)
    studies = labelled_studies(source, Path(out) / "cache", tags_csv)
    return evaluate_studies(studies, weights, out, {"source": str(source), "model": model}, device, progress)


def evaluate_studies(studies, weights: dict[str, list[str]], out, run: dict, device: str = "cpu",
                     progress=print) -> dict:
    """Score ``studies`` (``LabelledStudy``) with the ``muscle`` pipeline on ``weights``; write the report."""
    out = Path(out)
    rows, slices, unknown, skipped = [], [], {}, {}
    started = time.time()
    for i, study in enumerate(studies, 1):
        try:
            scores = score_study(study, weights, out / "predictions" / f"{study.id}.nii.gz", device)
        except (UserError, ValueError) as e:  # one bad study is reported, the others still count
            skipped[study.id] = str(e).splitlines()[0]
            progress(f"[{i}/{len(studies)}] {study.id}: skipped ({skipped[study.id]})")
            continue
        rows += scores.rows
        slices += scores.slices
        if scores.unknown:
            unknown[study.id] = scores.unknown
        progress(f"[{i}/{len(studies)}] {study.id}: {len(scores.slices)} annotated slices")
    if not slices:
        raise UserError(f"no annotated slice could be evaluated in {run.get('source', 'the datastore')}"
                        + (f" (skipped: {'; '.join(f'{k}: {v}' for k, v in skipped.items())})" if skipped else ""))
    summary = summarise(rows, slices, unknown, skipped)
    summary["run"] = {**run, "seconds": round(time.time() - started, 1),
                      "weights": {n: live_path(p) for n, p in weights.items()}}
    out.mkdir(parents=True, exist_ok=True)
    written = figures.write_figures(rows, slices, studies, out)
    report.write_report(summary, rows, slices, written, out)
    return summary
