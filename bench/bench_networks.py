"""Speed of the networks (SPEC §4, §8; Agosti et al., MAGMA 2022): fp32 eager vs the fast path.

    .venv/bin/python -m bench.bench_networks [--repeats 3] [--quick]

For the classifier (128×128) and the thigh segmenter (432×432), presets ``compact`` and
``paper``, batch 1 and 4: seconds per slice and slices per second of the fp32 eager model and of
``prepare_for_inference`` (BN folded, channels-last, precision "auto"), both timed in this
process with the runs interleaved, their ratio, and the fraction of the machine's peak (SPEC §8:
≈ 150 GFLOP/s fp32, ≈ 400 bf16). Also: explicit bf16 autocast for the compact networks, argmax
agreement fast vs fp32 on a structured slice, and the time of a 432×432×52 compact volume
(classifier on every slice + thigh segmenter, fast path). Writes ``bench/results/networks.json``
and ``bench/results/networks.md``. Timings share the CPU with whatever else runs: medians.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from pathlib import Path

# Before torch loads OpenMP: spinning worker threads collapse 2-thread runs on a shared 2-core
# machine (measured 1.2-2.4 s vs 0.13 s per compact slice); export ACTIVE to measure spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from bench import save_results  # noqa: E402
from lib.networks.fast import cpu_has_fast_bf16, predict_logits, prepare_for_inference  # noqa: E402
from lib.networks.presets import build_classifier, build_segmenter, gflops_per_slice  # noqa: E402

PEAK_GFLOPS = {"fp32": 150.0, "bf16": 400.0, "fp16": 400.0}  # SPEC §8, this CPU, 2 threads


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16": cpu_has_fast_bf16(), "python": platform.python_version(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
            "load_average_1min": round(os.getloadavg()[0], 2)}


def structured_batch(batch: int, side: int) -> torch.Tensor:
    """Two 'limbs' with 'bones', a bias field and noise: an MRI-like slice, repeated."""
    coords = torch.linspace(-1, 1, side)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    image = torch.zeros(side, side)
    for cx in (-0.45, 0.45):
        radius = torch.sqrt((xx - cx) ** 2 + yy**2)
        image += (radius < 0.4).float() * (0.7 + 0.3 * torch.cos(6 * math.pi * radius))
        image -= 0.6 * (radius < 0.08).float()
    image = image * (1 + 0.2 * xx) + 0.02 * torch.randn(side, side)
    return image.expand(batch, 1, side, side).contiguous()


def trained_like(model: nn.Module) -> nn.Module:
    """Random but non-trivial batch-norm statistics, so folding is really exercised."""
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.normal_(0, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
    return model.eval()


def time_interleaved(runs: dict, repeats: int) -> dict:
    """Median seconds per call of each callable, alternating them to share load drift."""
    for fn in runs.values():
        fn()  # warm-up (oneDNN primitive creation, allocator)
    samples = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def bench_network(kind: str, preset: str, batch: int, repeats: int, bf16: bool) -> list[dict]:
    torch.manual_seed(0)
    model = trained_like(build_classifier(preset) if kind == "classifier"
                         else build_segmenter("thigh", preset))
    side = model.default_input_size
    gflop = gflops_per_slice(model)
    x = structured_batch(batch, side)
    fast = prepare_for_inference(model, precision="auto")
    runs = {"fp32 eager": lambda: predict_logits(model, x, "fp32"),
            f"fast ({fast.inference_precision})": lambda: predict_logits(fast, x)}
    if bf16 and fast.inference_precision != "bf16":
        runs["fast (bf16)"] = lambda: predict_logits(fast, x, "bf16")
    seconds = time_interleaved(runs, repeats)
    reference = predict_logits(model, x, "fp32").argmax(1)
    rows = []
    for mode, total in seconds.items():
        precision = "fp32" if mode == "fp32 eager" else mode.split("(")[1].rstrip(")")
        per_slice = total / batch
        out = predict_logits(fast, x, precision) if mode != "fp32 eager" else None
        agreement = 1.0 if out is None else (out.argmax(1) == reference).float().mean().item()
        rows.append({"network": "classifier" if kind == "classifier" else "thigh segmenter",
                     "preset": preset, "input": f"{side}x{side}", "batch": batch, "mode": mode,
                     "gflop_per_slice": round(gflop, 2), "s_per_slice": per_slice,
                     "slices_per_s": 1 / per_slice,
                     "speedup_vs_fp32": seconds["fp32 eager"] / total,
                     "gflops_achieved": gflop / per_slice,
                     "fraction_of_peak": gflop / per_slice / PEAK_GFLOPS[precision],
                     "argmax_agreement_vs_fp32": agreement})
    return rows


def bench_volume(batch: int = 4, depth: int = 52) -> dict:
    """A compact 432×432×depth volume: classify every slice, then segment every slice."""
    torch.manual_seed(0)
    classifier = prepare_for_inference(trained_like(build_classifier("compact")))
    segmenter = prepare_for_inference(trained_like(build_segmenter("thigh", "compact")))
    volume = structured_batch(depth, 432)
    start = time.perf_counter()
    small = nn.functional.interpolate(volume, size=(128, 128), mode="bicubic", antialias=True)
    regions = torch.cat([predict_logits(classifier, small[i:i + batch]).argmax(1)
                         for i in range(0, depth, batch)])
    classified = time.perf_counter()
    labels = torch.cat([predict_logits(segmenter, volume[i:i + batch]).argmax(1)
                        for i in range(0, depth, batch)])
    done = time.perf_counter()
    assert regions.shape == (depth,) and labels.shape == (depth, 432, 432)
    return {"slices": depth, "batch": batch, "precision": segmenter.inference_precision,
            "classifier_s": classified - start, "segmenter_s": done - classified,
            "total_s": done - start, "s_per_slice": (done - start) / depth}


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# Network speed ({m['cpu']}, {m['threads']} threads, torch {m['torch']}, "
             f"{m['cpu_capability']}, native bf16: {m['native_bf16']}, "
             f"OMP_WAIT_POLICY={m['omp_wait_policy']})", "",
             f"Load average (1 min) before / after: {m['load_average_1min_before']} / "
             f"{m['load_average_1min']} on {os.cpu_count()} cores: other jobs share the CPU, "
             "and 2-thread OpenMP runs degrade sharply when a core is busy.", "",
             "| network | preset | batch | mode | GFLOP/slice | s/slice | slices/s | speed-up "
             "vs fp32 | GFLOP/s | % of peak | argmax agreement |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["networks"]:
        lines.append(f"| {r['network']} | {r['preset']} | {r['batch']} | {r['mode']} | "
                     f"{r['gflop_per_slice']:.2f} | {r['s_per_slice']:.4f} | "
                     f"{r['slices_per_s']:.1f} | {r['speedup_vs_fp32']:.2f} | "
                     f"{r['gflops_achieved']:.1f} | {100 * r['fraction_of_peak']:.0f} % | "
                     f"{100 * r['argmax_agreement_vs_fp32']:.2f} % |")
    v = report["volume"]
    lines += ["", f"Compact 432x432x{v['slices']} volume, fast path ({v['precision']}), batch "
              f"{v['batch']}: classifier {v['classifier_s']:.2f} s + thigh segmenter "
              f"{v['segmenter_s']:.2f} s = **{v['total_s']:.2f} s** "
              f"({v['s_per_slice']:.3f} s/slice).",
              "", f"Peaks (SPEC §8): fp32 {PEAK_GFLOPS['fp32']:.0f} GFLOP/s, bf16 "
              f"{PEAK_GFLOPS['bf16']:.0f} GFLOP/s. Medians of {report['repeats']} interleaved runs "
              "after one warm-up; random weights with randomised batch-norm statistics."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per mode (median)")
    parser.add_argument("--quick", action="store_true", help="compact preset and batch 1 only")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = round(os.getloadavg()[0], 2)
    presets = ("compact",) if args.quick else ("compact", "paper")
    batches = (1,) if args.quick else (1, 4)
    rows = []
    for kind in ("classifier", "segmenter"):
        for preset in presets:
            for batch in batches:
                bf16 = preset == "compact" and batch == 1  # bf16 is slow without native support
                new = bench_network(kind, preset, batch, args.repeats, bf16)
                rows += new
                print(f"{kind} {preset} batch {batch}: " + ", ".join(
                    f"{r['mode']} {r['s_per_slice']:.4f} s/slice" for r in new), flush=True)
    report = {"machine": {**machine(), "load_average_1min_before": load_before},
              "repeats": args.repeats, "networks": rows, "volume": bench_volume()}
    save_results("networks", report, markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
