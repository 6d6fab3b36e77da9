"""One table of every speed benchmark, from the results in ``bench/results/*.json``.

    .venv/bin/python -m bench.summary        # or: python main.py bench summary

Writes ``bench/results/summary.md`` (the README's table) and ``summary.json``. Each line
names the benchmark it comes from; ``runs.json`` (written by ``python main.py bench``) adds
the wall time and peak resident memory of each benchmark's process tree. A benchmark never
run shows as "not run". No GPU line appears unless a result was measured on one.
"""

from __future__ import annotations

import json

from bench import RESULTS



def _load(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _network_lines(networks: dict) -> list[list]:
    lines = []
    for entry in networks.get("networks", []):
        if entry["batch"] != 1 or "autocast" in entry["mode"]:
            continue
        lines.append([f"{entry['network']}, {entry['preset']}", entry["mode"], "s per slice (batch 1)",
                      f"{entry['s_per_slice']:.3f}", f"{entry['slices_per_s']:.1f} slices/s", "networks"])
    volume = networks.get("volume")
    if volume:
        lines.append(["classifier + thigh segmenter, compact", f"fast ({volume['precision']}), batch {volume['batch']}",
                      "432×432×52 volume, network time", f"{volume['total_s']:.2f} s",
                      f"{volume['slices'] / volume['total_s']:.1f} slices/s", "networks"])
    return lines


def _infer_lines(infer: dict) -> list[list]:
    lines = []
    for key in ("compact", "paper", "compact leg", "paper leg"):
        entry = infer.get(key)
        if entry:
            med = entry["median_seconds"]
            region = entry.get("region", "thigh")
            lines.append([f"`POST /infer/muscle`, {entry['preset']}", "server, fast path", f"432×432×52 {region} volume, end to end",
                          f"{med['wall']:.2f} s", f"{52 / med['wall']:.1f} slices/s, {100 * med['overhead_fraction']:.0f} % outside the networks",
                          "infer"])
    return lines


def table_lines() -> list[list]:
    lines = _network_lines(_load("networks")) + _infer_lines(_load("infer"))
    incremental = _load("incremental")
    if incremental:
        lines.append(["incremental round", "train task via server", f"{incremental['corrected_slices']} corrected slices",
                      f"{incremental['round_seconds']:.0f} s", f"Dice on uncorrected slices +{incremental['gain']:.3f}",
                      "incremental"])
    scoring = _load("scoring")
    if scoring:
        lines += [["`slice_uncertainty` scoring", "shipped weights", "per 432×432×52 volume", f"{scoring['slice_uncertainty_s']:.2f} s", "", "scoring"],
                  ["`evaluation` scoring", "shipped weights", f"per volume ({scoring['evaluated_slices']} slices)",
                   f"{scoring['evaluation_s']:.2f} s", "", "scoring"]]
    concurrency = _load("concurrency")
    if concurrency:
        lat = concurrency["latency"]
        lines.append([f"{concurrency['clients']} clients at once", "infer + save + read + next sample, while training",
                      f"{concurrency['requests']} requests", f"{concurrency['seconds']:.0f} s",
                      f"{concurrency['requests_per_s']} req/s; p50/p95 s: " + ", ".join(
                          f"{k} {v['p50_s']}/{v['p95_s']}" for k, v in lat.items()), "concurrency"])
    cohort = _load("cohort")
    if cohort:
        one, two = cohort["one_process"], cohort["two_shards"]
        lines.append(["`main.py infer DIR`, compact", "1 process", f"{cohort['volumes']} volumes 432×432×52, end to end",
                      f"{one['wall_s']:.0f} s", f"{one['volumes_per_min']} volumes/min ({one['loop_volumes_per_min']} "
                      "in the loop)", "cohort"])
        lines.append(["`main.py infer DIR`, compact", "2 shards × 1 thread + merge",
                      f"{cohort['volumes']} volumes 432×432×52, end to end", f"{two['wall_s']:.0f} s",
                      f"{two['volumes_per_min']} volumes/min", "cohort"])
    real = _load("real")
    if real:  # an accuracy check on real MRI, not a speed: its time is the whole run's
        overall = real["overall"]
        lines.append(["real MRI check", "5 real volumes + the real leg slice, via server",
                      f"weights {real['weights'].split('+')[0]}", f"{real['seconds'] / 60:.0f} min",
                      f"classifier min accuracy {overall['min_accuracy']:.3f} (target 0.99), leg slices routed thigh "
                      f"{overall['leg_routed_thigh']}; see bench/results/real.md", "real"])
    al = _load("active_learning")
    if al:
        lines.append(["active-learning benchmark", f"{al['rounds']} rounds of {al['n']} slices", "whole run",
                      f"{al['seconds'] / 60:.0f} min", "", "active_learning"])
    return lines


def machine_line() -> str:
    for name in ("networks", "infer", "scoring", "incremental"):
        data = _load(name)
        m = data.get("machine") or next((v.get("machine") for v in data.values() if isinstance(v, dict) and "machine" in v), None)
        if m:
            return (f"{m['cpu']}, {m['threads']} threads, {m['cpu_capability']}, native bf16: {m['native_bf16']}; "
                    f"torch {m['torch']}, Python {m['python']}; no GPU")
    return "unknown (no benchmark results yet)"


def markdown() -> str:
    runs = _load("runs")
    lines = table_lines()
    out = ["# Benchmarks", "", f"Machine: {machine_line()}.", "",
           "| what | mode | measured on | time | rate / note | benchmark |", "| --- | --- | --- | ---: | --- | --- |"]
    out += ["| " + " | ".join(map(str, line)) + " |" for line in lines]
    if runs:
        out += ["", "| benchmark | wall time | peak memory (process tree) | run at |", "| --- | ---: | ---: | --- |"]
        out += [f"| {name} | {r['seconds'] / 60:.1f} min | {r['peak_rss_mb']} MB | {r['date']} |" for name, r in sorted(runs.items())]
    out += ["", "Reproduce: `python main.py bench` (all, about 35 min on 2 cores) or `python main.py bench NAME`; "
                "`python main.py bench summary` rewrites this table from the results.", ""]
    return "\n".join(out)


def write() -> str:
    text = markdown()
    (RESULTS / "summary.md").write_text(text)
    (RESULTS / "summary.json").write_text(json.dumps({"machine": machine_line(), "lines": table_lines(),
                                                      "runs": _load("runs")}, indent=2))
    return text


if __name__ == "__main__":
    print(write())
