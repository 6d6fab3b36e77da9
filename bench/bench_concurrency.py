"""Throughput and latency of 8 annotators at once while the model trains (issue: reliability).

    .venv/bin/python -m bench.bench_concurrency

The scenario of ``tests/reliability/test_concurrency.py`` (which asserts correctness: no 5xx,
labels byte-identical, the index valid): 8 clients, each with its own uploaded 96 x 96 x 6 leg
phantom, do 3 rounds of infer, save label, read it back, next sample (``random`` twice, then
``uncertain_slices`` for the leg), while a training round and slice scoring run in the
background. The clients start once the server has scored the embedded studies it started with,
as on a server that has been up a while; it scores the 8 uploads as they come (next sample only
reads cached scores, issue 18); the training round is long enough (2 epochs
of 20 steps) to last the whole client phase. A poller records which background tasks ran
while the clients worked, and the next-sample answers are counted by what ranked them (scored
by the live model, by an earlier model, unscored). Writes ``bench/results/concurrency.json``
and ``.md``; issue 18's target: next_sample p95 <= 2 s with 0 answers 5xx.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from collections import Counter
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
TRAIN_ROUND = {"epochs": 2, "steps_per_epoch": 20}
TARGET_P95_S = 2.0


def poll_background(url: str, stop: threading.Event, seen: list) -> None:
    """Every second: is a train / a scoring task running (``check_if_running``)?"""
    while not stop.is_set():
        state = {}
        for kind in ("train", "scoring"):
            try:
                r = requests.get(f"{url}/{kind}/", params={"check_if_running": True}, timeout=30)
                state[kind] = r.status_code == 200
            except requests.RequestException:
                state[kind] = None
        seen.append(state)
        stop.wait(1.0)


def sample_kind(answer: dict) -> str:
    if not answer:
        return "empty"
    if answer.get("scored") is True:
        return "scored"
    if answer.get("stale"):
        return "stale"
    return "unscored" if "scored" in answer else "random"


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with Server(copy_studies(tmp / "studies"), tmp / "server.log") as srv:
            # A server that has been up a while: the studies it started with are scored (the
            # leg requests of the last round need a scored leg), the uploads are not yet.
            srv.wait_scoring_idle(900)
            phantoms = upload_images(srv, tmp)
            train = requests.post(f"{srv.url}/train/segmentation_leg", json=TRAIN_ROUND, timeout=60)
            scoring = requests.post(f"{srv.url}/scoring/slice_uncertainty", timeout=60)  # 429: already running
            timings, errors, samples, seen = [], [], [], []
            stop = threading.Event()
            poller = threading.Thread(target=poll_background, args=(srv.url, stop, seen), daemon=True)
            poller.start()
            start = time.perf_counter()
            with ThreadPoolExecutor(CLIENTS) as pool:
                for future in [pool.submit(client, srv, i, p, tmp, timings, errors, samples)
                               for i, p in phantoms.items()]:
                    future.result()
            wall = time.perf_counter() - start
            stop.set()
            poller.join()
            train_task = wait_idle(srv, "train")
            wait_idle(srv, "scoring")
            r = requests.get(f"{srv.url}/scoring/", params={"all": True}, timeout=30)
            scoring_runs = r.json() if r.status_code == 200 else []
    latency = {kind: {"n": len(t), "p50_s": round(float(np.percentile(t, 50)), 2),
                      "p95_s": round(float(np.percentile(t, 95)), 2), "max_s": round(float(max(t)), 2)}
               for kind in KINDS if (t := [s for k, s in timings if k == kind])}
    polls = [s for s in seen if None not in s.values()]
    background = {
        "train_round": {**TRAIN_ROUND, "started": train.status_code, "status": train_task.get("status")},
        "scoring_post": scoring.status_code,
        "scoring_runs": len([t for t in scoring_runs if t["request"].get("method") == "slice_uncertainty"]),
        "share_of_client_phase_training": round(sum(s["train"] for s in polls) / max(1, len(polls)), 2),
        "share_of_client_phase_scoring": round(sum(s["scoring"] for s in polls) / max(1, len(polls)), 2),
    }
    answers = {f"{strategy}: {kind}": n for (strategy, kind), n in
               sorted(Counter((s, sample_kind(a)) for s, a in samples).items())}
    return {"clients": CLIENTS, "rounds": ROUNDS, "requests": len(timings), "seconds": round(wall, 1),
            "requests_per_s": round(len(timings) / wall, 2), "server_errors": len(errors), "latency": latency,
            "next_sample_answers": answers, "background": background,
            "target": {"next_sample_p95_s": TARGET_P95_S,
                       "met": latency["next_sample"]["p95_s"] <= TARGET_P95_S and not errors},
            "machine": machine()}


def markdown(result: dict) -> str:
    bg = result["background"]
    lines = ["# Concurrency", "",
             f"{result['clients']} clients × {result['rounds']} rounds while a training round and slice scoring run: "
             f"{result['requests']} requests in {result['seconds']} s ({result['requests_per_s']} req/s), "
             f"{result['server_errors']} answers 5xx.", "",
             "| request | n | p50 s | p95 s | max s |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {k} | {v['n']} | {v['p50_s']} | {v['p95_s']} | {v.get('max_s', '')} |"
              for k, v in result["latency"].items()]
    lines += ["", f"Background while the clients worked: training {bg['share_of_client_phase_training']:.0%} "
                  f"of the time (round {bg['train_round']['epochs']} x {bg['train_round']['steps_per_epoch']} "
                  f"steps, {bg['train_round']['status']}), slice scoring {bg['share_of_client_phase_scoring']:.0%} "
                  f"({bg['scoring_runs']} runs).",
              "Next-sample answers: " + ", ".join(f"{k} {v}" for k, v in result["next_sample_answers"].items()) + ".",
              f"Target (issue 18): next_sample p95 <= {result['target']['next_sample_p95_s']} s with 0 x 5xx: "
              f"{'met' if result['target']['met'] else 'not met'}."]
    return "\n".join(lines + [""])


def main() -> None:
    result = run()
    save_results("concurrency", result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
