"""Time per volume of the two scoring methods the server runs over a datastore.

    .venv/bin/python -m bench.bench_scoring [--repeats 2]

On a 432 x 432 x 52 thigh phantom labelled on every slice (1.04 x 1.04 x 5 mm), with the
shipped weights: ``slice_uncertainty`` (classifier + Monte-Carlo dropout entropy of every
slice, what the active-learning strategy ranks) and ``evaluation`` (the routed pipeline on
every annotated slice + Dice, HD95 and MSD per muscle and side). Median of ``--repeats`` runs
after one warm-up; peak resident memory of this process. Writes
``bench/results/scoring.json`` and ``bench/results/scoring.md``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import save_results  # noqa: E402
from bench.bench_networks import machine  # noqa: E402
from lib.data.phantoms.embedded import StudySpec, write_study  # noqa: E402
from lib.evaluation.studies import local_studies  # noqa: E402
from lib.evaluation.study_scores import score_study  # noqa: E402
from lib.inference.uncertainty import score_volume  # noqa: E402
from lib.models.store import ModelStore, live_path  # noqa: E402


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up: loads the networks
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def run(repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        spec = StudySpec("thigh", 20_901, "mild", 52, (432, 432), (1.04, 1.04, 5.0), "all")
        write_study(tmp, spec)
        study = local_studies(tmp)[0]
        shipped = ModelStore(Path(tmp) / "model").weights("shipped")
        live = {n: live_path(candidates) for n, candidates in shipped.items()}
        uncertainty = timed(lambda: score_volume(study.image, live), repeats)
        n_annotated = []
        evaluation = timed(lambda: n_annotated.append(len(score_study(study, shipped, Path(tmp) / "pred.nii.gz").slices)),
                           repeats)
    return {"volume": "432x432x52 thigh phantom, every slice labelled", "repeats": repeats,
            "slice_uncertainty_s": round(statistics.median(uncertainty), 2),
            "evaluation_s": round(statistics.median(evaluation), 2), "evaluated_slices": n_annotated[-1],
            "runs": {"slice_uncertainty": [round(t, 2) for t in uncertainty], "evaluation": [round(t, 2) for t in evaluation]},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "machine": machine()}


def markdown(result: dict) -> str:
    return "\n".join([
        "# Scoring time per volume", "",
        f"{result['volume']}; median of {result['repeats']} runs after a warm-up; shipped weights.", "",
        "| scoring method | s per volume | what it does |", "| --- | ---: | --- |",
        f"| `slice_uncertainty` | {result['slice_uncertainty_s']} | classifier + MC-dropout entropy of all 52 slices |",
        f"| `evaluation` | {result['evaluation_s']} | pipeline on {result['evaluated_slices']} annotated slices + Dice, HD95, MSD |",
        "", f"Peak resident memory: {result['peak_rss_mb']} MB. Machine: {result['machine']['cpu']}, "
            f"{result['machine']['threads']} threads, torch {result['machine']['torch']}.", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    result = run(args.repeats)
    save_results("scoring", result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
