"""Throughput and latency of 8 annotators at once while the model trains (issue: reliability).

    .venv/bin/python -m bench.bench_concurrency

The scenario of ``tests/reliability/test_concurrency.py`` (which asserts correctness: no 5xx,
labels byte-identical, the index valid): 8 clients, each with its own uploaded 96 x 96 x 6 leg
phantom, do 3 rounds of infer, save label, read it back, next sample, while a training round
and slice scoring run in the background. Writes ``bench/results/concurrency.json`` and ``.md``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import requests  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import save_results  # noqa: E402
from bench.bench_networks import machine  # noqa: E402
from tests.conftest import Server, copy_studies  # noqa: E402
from tests.reliability.test_concurrency import CLIENTS, ROUNDS, client, upload_images, wait_idle  # noqa: E402

KINDS = ("infer", "save_label", "read_label", "next_sample")


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with Server(copy_studies(tmp / "studies"), tmp / "server.log") as srv:
            phantoms = upload_images(srv, tmp)
            requests.post(f"{srv.url}/train/segmentation_leg", json={"epochs": 1, "steps_per_epoch": 2}, timeout=60)
            requests.post(f"{srv.url}/scoring/slice_uncertainty", timeout=60)
            timings, errors = [], []
            start = time.perf_counter()
            with ThreadPoolExecutor(CLIENTS) as pool:
                for future in [pool.submit(client, srv, i, p, tmp, timings, errors) for i, p in phantoms.items()]:
                    future.result()
            wall = time.perf_counter() - start
            wait_idle(srv, "train")
            wait_idle(srv, "scoring")
    latency = {kind: {"n": len(t), "p50_s": round(float(np.percentile(t, 50)), 2), "p95_s": round(float(np.percentile(t, 95)), 2)}
               for kind in KINDS if (t := [s for k, s in timings if k == kind])}
    return {"clients": CLIENTS, "rounds": ROUNDS, "requests": len(timings), "seconds": round(wall, 1),
            "requests_per_s": round(len(timings) / wall, 2), "server_errors": len(errors), "latency": latency,
            "machine": machine()}


def markdown(result: dict) -> str:
    lines = ["# Concurrency", "",
             f"{result['clients']} clients × {result['rounds']} rounds while a training round and slice scoring run: "
             f"{result['requests']} requests in {result['seconds']} s ({result['requests_per_s']} req/s), "
             f"{result['server_errors']} answers 5xx.", "",
             "| request | n | p50 s | p95 s |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {k} | {v['n']} | {v['p50_s']} | {v['p95_s']} |" for k, v in result["latency"].items()]
    return "\n".join(lines + [""])


def main() -> None:
    result = run()
    save_results("concurrency", result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
