"""Cohort throughput: ``python main.py infer DIR`` on 20 compact 432 x 432 x 52 volumes, end to end.

    .venv/bin/python -m bench.bench_cohort [--volumes 20]

Generates the volumes (thigh and leg phantoms, healthy / mild / severe, 1.04 x 1.04 x 5 mm, as
``bench_infer`` does), then times, each in a fresh output folder:

- ``1 process``: ``main.py infer DIR --out OUT``, torch on every core;
- ``2 shards``: ``--part-id 0`` and ``--part-id 1`` of ``--num-parts 2``, started together, one
  thread each (``--threads 1``, ``OMP_NUM_THREADS=1``), into one folder, then ``merge-cohort``;
- ``rerun``: the first command again on its finished folder (every study skipped).

The wall time is the command's, from start to exit: Python and torch start-up, model loading,
reading the NIfTI files, the networks, the label files and the tables. "In the loop" is the
time inside the run (``cohort.json``'s ``seconds``: checking, read + infer + measure + write),
the rate a long cohort approaches once start-up is paid. Writes ``bench/results/cohort.json`` and
``bench/results/cohort.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import save_results  # noqa: E402
from bench.bench_networks import machine  # noqa: E402
from lib.data.io import save_nifti  # noqa: E402
from lib.data.phantoms.phantom import generate_phantom  # noqa: E402

SEVERITIES = ("healthy", "mild", "severe")


def make_volumes(folder: Path, count: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        region, severity = ("thigh", "leg")[i % 2], SEVERITIES[(i // 2) % 3]
        phantom = generate_phantom(region, 21_000 + i, n_slices=52, severity=severity)
        assert phantom.image.shape == (432, 432, 52), phantom.image.shape
        name = f"v{i:02d}_{region}_{severity}"
        save_nifti(folder / f"{name}.nii.gz", phantom.image, phantom.affine)
        names.append(name)
    return names


def main_py(*args) -> list[str]:
    return [sys.executable, str(ROOT / "main.py"), *map(str, args)]


def timed(commands: list[list[str]], env: dict | None = None) -> tuple[float, list[str]]:
    """Run the commands at once; (wall seconds until the last one ends, their stdout)."""
    start = time.perf_counter()
    processes = [subprocess.Popen(c, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for c in commands]
    outputs = []
    for process in processes:
        out, err = process.communicate()
        if process.returncode:
            raise SystemExit(f"{' '.join(process.args)} failed ({process.returncode}):\n{err[-3000:]}")
        outputs.append(out)
    return time.perf_counter() - start, outputs


def loop_seconds(out: Path, pattern: str = "cohort.json") -> list[float]:
    """Each process's time inside its run (``cohort.json``, or each part's: checking and
    segmenting, no start-up)."""
    return [json.loads(p.read_text())["seconds"] for p in sorted(out.glob(pattern))]


def rates(count: int, wall: float, loops: list[float]) -> dict:
    """Volumes per minute of the command, and inside the run (the processes share the volumes
    evenly: each did count / len(loops) in its own loop time)."""
    inside = sum(count / len(loops) / s for s in loops) * 60
    return {"wall_s": round(wall, 1), "volumes_per_min": round(60 * count / wall, 1),
            "loop_s": [round(s, 1) for s in loops], "loop_volumes_per_min": round(inside, 1)}


def run(count: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_cohort_") as tmp:
        tmp = Path(tmp)
        studies = tmp / "studies"
        started = time.perf_counter()
        make_volumes(studies, count)
        generated = time.perf_counter() - started
        before = machine()

        one = tmp / "one"
        wall, _ = timed([main_py("infer", studies, "--out", one)])
        single = rates(count, wall, loop_seconds(one))

        two = tmp / "two"
        wall, _ = timed([main_py("infer", studies, "--out", two, "--part-id", i, "--num-parts", 2, "--threads", 1)
                         for i in (0, 1)], env={"OMP_NUM_THREADS": "1"})
        merge_wall, _ = timed([main_py("merge-cohort", two)])
        shards = rates(count, wall + merge_wall, loop_seconds(two, "cohort.part-*-of-2.json"))
        shards["merge_s"] = round(merge_wall, 1)

        rerun_wall, outputs = timed([main_py("infer", studies, "--out", one)])
        assert f"0 segmented, {count} already done" in outputs[0], outputs[0]
        rows = sum(1 for _ in open(one / "measurements.csv")) - 1
    return {"volumes": count, "volume": "432x432x52, 1.04x1.04x5 mm, thigh and leg phantoms", "weights": "shipped (compact)",
            "generate_s": round(generated, 1), "one_process": single, "two_shards": shards,
            "rerun_all_done_s": round(rerun_wall, 1), "measurement_rows": rows,
            "machine": before, "load_average_after": round(os.getloadavg()[0], 2)}


def markdown(r: dict) -> str:
    one, two = r["one_process"], r["two_shards"]
    m = r["machine"]
    lines = [f"| `main.py infer DIR`, {r['volumes']} compact 432×432×52 volumes | wall (s) | volumes/min | "
             "in the loop: volumes/min |", "| --- | ---: | ---: | ---: |",
             f"| 1 process, {m['threads']} threads | {one['wall_s']} | {one['volumes_per_min']} | {one['loop_volumes_per_min']} |",
             f"| 2 shards × 1 thread, + merge ({two['merge_s']} s) | {two['wall_s']} | {two['volumes_per_min']} | "
             f"{two['loop_volumes_per_min']} |",
             f"| rerun, all {r['volumes']} already done | {r['rerun_all_done_s']} | | |",
             "", f"End to end: Python and torch start-up, reading, networks, label files, tables. \"In the loop\": "
                 f"inside the run, without start-up (cohort.json's seconds; 2 shards: the sum of both rates). {m['cpu']}, {m['threads']} threads, load average {m['load_average_1min']} before, "
                 f"{r['load_average_after']} after (the CPU is shared with other jobs). "
                 f"{r['measurement_rows']} rows in measurements.csv.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=20)
    args = parser.parse_args()
    result = run(args.volumes)
    text = markdown(result)
    save_results("cohort", result, text)
    print(text)


if __name__ == "__main__":
    main()
