"""End-to-end inference through the real server (issue: infer tasks), as a viewer calls it.

    .venv/bin/python -m bench.bench_infer [--repeats 3] [--presets compact] [--regions thigh leg]

Generates a 432 x 432 x 52 thigh phantom (1.04 x 1.04 x 5 mm), starts ``python main.py serve``
on a loopback port with that one study, and times ``POST /infer/muscle`` (label file + JSON)
end to end on the client. The issue's target is the thigh volume's; a leg phantom of the same
size is timed too, because the shipped leg segmenter is an ensemble of three networks
(``lib.networks.ensemble``) and costs about three times the thigh's. The server's own latency split (pre-processing, networks, post,
writing) comes back in the result JSON; "overhead" is everything but the networks.
Writes ``bench/results/infer.json`` and ``bench/results/infer.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import requests  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import NO_BACKGROUND_SCORING  # noqa: E402
from bench.bench_networks import machine  # noqa: E402
from lib.data.io import save_nifti  # noqa: E402
from lib.data.phantoms.phantom import generate_phantom  # noqa: E402
from lib.labels import REGIONS  # noqa: E402
from lib.models.catalog import CLASSIFIER, segmenter_name, weight_file  # noqa: E402
from lib.networks.checkpoint import save_checkpoint  # noqa: E402
from lib.networks.presets import build_classifier, build_segmenter  # noqa: E402
from tests.conftest import Server  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def paper_weights(model_dir: Path) -> None:
    """Untrained ``paper``-preset networks as the live models (timing only: weights are random)."""
    models = {CLASSIFIER: build_classifier("paper"), **{segmenter_name(r): build_segmenter(r, "paper") for r in REGIONS}}
    for name, model in models.items():
        save_checkpoint(weight_file(model_dir, name), model, {"name": name, "preset": "paper", "source": "bench, untrained"})


def compiles_pending(url: str, timeout: float = 600) -> bool:
    """Wait until the server compiles nothing (``/info`` ``compiled_networks``); whether any
    compile was pending when called."""
    deadline, waited = time.monotonic() + timeout, False
    while time.monotonic() < deadline:
        networks = requests.get(f"{url}/info/", timeout=60).json().get("compiled_networks", {})
        if not any(n["pending"] for n in networks.values()):
            return waited
        waited = True
        time.sleep(1.0)
    raise TimeoutError("the server's compiles did not finish")


def warm_up(url: str, image: str) -> int:
    """Requests until one leaves no compile behind: the first loads the models, and the server
    compiles each recurring input shape in the background (``lib.networks.compiled``). Returns
    how many warm-up requests it took."""
    for count in range(1, 6):
        requests.post(f"{url}/infer/muscle", params={"image": image}, timeout=600).raise_for_status()
        if not compiles_pending(url) and count >= 2:  # a shape seen once per request compiles at the second
            return count
    return count


def run(repeats: int, preset: str = "compact", region: str = "thigh", compile_networks: bool = True) -> dict:
    image = f"{region}_432x432x52"
    with tempfile.TemporaryDirectory() as tmp:
        studies = Path(tmp) / "studies"
        studies.mkdir()
        phantom = generate_phantom(region, 20_900, n_slices=52, severity="mild")
        save_nifti(studies / f"{image}.nii.gz", phantom.image, phantom.affine)
        model_dir = Path(tmp) / "model"
        if preset == "paper":
            paper_weights(model_dir)
        server = Server(studies, Path(tmp) / "server.log", NO_BACKGROUND_SCORING, model_dir=model_dir,
                        compile_networks=compile_networks)
        try:
            server.wait_ready()
            warm_ups = warm_up(server.url, image)
            url = f"{server.url}/infer/muscle"
            compiled = requests.get(f"{server.url}/info/", timeout=60).json().get("compiled_networks", {})
            rows = []
            for _ in range(repeats):
                start = time.perf_counter()
                r = requests.post(url, params={"image": image}, timeout=600)
                wall = time.perf_counter() - start
                r.raise_for_status()
                params = r.text.split("\r\n\r\n", 2)[1].split("\r\n--")[0] if "multipart" in r.headers[
                    "content-type"] else r.text
                latencies = json.loads(params)["latencies"]
                rows.append({"wall": wall, **{k: latencies[k] for k in ("pre", "infer", "post", "write", "total")}})
        finally:
            server.stop()
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    med["overhead"] = med["wall"] - med["infer"]
    med["overhead_fraction"] = med["overhead"] / med["wall"]
    return {"volume": f"432x432x52 {region} phantom", "preset": preset, "region": region, "repeats": repeats, "median_seconds": med,
            "runs": rows, "machine": machine(), "compile_networks": compile_networks, "warm_ups": warm_ups,
            "compiled_networks": {name: n["ready"] for name, n in compiled.items()}}


def result_key(preset: str, region: str) -> str:
    """The key of a run in ``infer.json``: the preset for the thigh (the issue's volume), else
    ``"<preset> <region>"``."""
    return preset if region == "thigh" else f"{preset} {region}"


def markdown(results: dict) -> str:
    """The table of ``infer.json``, with the machine: the CPU's vector ISA and whether it has
    native bf16 decide the fast path's precision (bf16, else fp32), so figures differ by host."""
    lines = ["| POST /infer/muscle, 432x432x52 (s) | " + " | ".join(results) + " |",
             "| --- | " + " | ".join("---:" for _ in results) + " |"]
    for k in ("wall", "pre", "infer", "post", "write", "overhead"):
        lines.append(f"| {k} | " + " | ".join(f"{r['median_seconds'][k]:.2f}" for r in results.values()) + " |")
    lines.append("| overhead fraction | " + " | ".join(f"{r['median_seconds']['overhead_fraction']:.0%}"
                                                    for r in results.values()) + " |")
    first = next(iter(results.values()))
    m = first["machine"]
    precision = "bf16" if m["native_bf16"] else "fp32"
    lines += ["", f"Medians of {first['repeats']} runs after a warm-up; {m['cpu']}, {m['cpu_capability']}, "
              f"native bf16: {m['native_bf16']} (the fast path runs {precision}), {m['threads']} threads, "
              f"load {m['load_average_1min']}. `paper`: untrained weights of the paper's size (timing only)."]
    shapes = {key: sorted({tuple(s) for ready in r.get("compiled_networks", {}).values() for s in ready})
              for key, r in results.items()}
    lines += ["", "Compiled networks (`lib.networks.compiled`): " + "; ".join(
        f"{key}: {'input shapes ' + ', '.join('x'.join(map(str, s)) for s in shapes[key]) if shapes[key] else 'none, eager'}"
        for key in results) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--presets", nargs="+", default=["compact", "paper"], choices=["compact", "paper"])
    parser.add_argument("--regions", nargs="+", default=list(REGIONS), choices=list(REGIONS))
    parser.add_argument("--no-compile", action="store_true",
                        help="serve with --conf compile_networks false (the networks eager)")
    args = parser.parse_args()
    results = {result_key(preset, region): run(args.repeats, preset, region, not args.no_compile)
               for preset in args.presets for region in args.regions}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "infer.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (RESULTS / "infer.md").write_text(table)
    print(table, end="")


if __name__ == "__main__":
    main()
