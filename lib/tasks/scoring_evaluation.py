"""MONAI Label scoring method ``evaluation``: the evaluation report of the live model, on the server.

``POST /scoring/evaluation`` (params ``{"model": "live" | "shipped" | "v3" ...}``) scores the
``muscle`` pipeline on every labelled slice of the served datastore, local or DICOMweb, as
``python main.py evaluate`` does. The report goes to ``<model dir>/evaluation/`` and is served
by ``GET /evaluation/`` (``lib/server/evaluation_routes.py``); each image's info gets its
Dice per region under ``evaluation``, so ``GET /datastore/?output=all`` shows it too.
"""

from __future__ import annotations

import logging
import time

from monailabel.interfaces.tasks.scoring import ScoringMethod

from lib.evaluation.run import evaluate_studies, muscle_weights, report_dir
from lib.evaluation.studies import datastore_studies

logger = logging.getLogger(__name__)

INFO_KEY = "evaluation"


class EvaluationScoring(ScoringMethod):
    """Dice per muscle, surface distances and classifier accuracy on the datastore's labels.

    Args:
        model_dir: the app's live model folder (the report is written below it).
    """

    def __init__(self, model_dir):
        super().__init__("Evaluation report of the live model on every annotated slice of the datastore "
                         "(Dice per muscle, HD95, classifier accuracy); GET /evaluation/ shows it")
        self.model_dir = model_dir

    def __call__(self, request, datastore):
        model = str(request.get("model", "live"))
        weights = muscle_weights(model, self.model_dir)
        studies = datastore_studies(datastore)
        summary = evaluate_studies(studies, weights, report_dir(self.model_dir), {"source": "datastore", "model": model},
                                   request.get("device", "cpu"), progress=lambda line: print(f"evaluation: {line}", flush=True))
        stamp = int(time.time())
        for study in {g["study"] for g in summary["per_study"]}:
            dice = {g["region"]: round(g["dice"], 4) for g in summary["per_study"] if g["study"] == study}
            datastore.update_image_info(study, {INFO_KEY: {"model": model, "time": stamp, "dice": dice}})
        headline = {r: round(v["dice"], 4) for r, v in summary["headline"].items()}
        logger.info(f"evaluation: {headline}, classifier accuracy {summary['classifier']['accuracy']:.4f}")
        return {"headline": headline, "classifier_accuracy": summary["classifier"]["accuracy"],
                "slices": summary["slices"], "report": str(report_dir(self.model_dir) / "report.md")}
