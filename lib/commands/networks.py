"""``main.py networks``: size of every network per preset (SPEC §4, Agosti et al. MAGMA 2022).

Prints, for each preset and network (region classifier, thigh and leg segmenters), the base
width, classes, parameters, GFLOP per slice (2 × multiply-accumulates of conv/dense layers) at
the model input size, and the receptive fields of the encoder convs per block (paper Table 1
arithmetic; ``--exact-rf`` for the standard arithmetic). Networks are built on PyTorch's
"meta" device: nothing is allocated, so even the paper preset prints instantly.
"""

from __future__ import annotations

import json

import torch

from lib.networks import presets

NETWORKS = ("classifier", "thigh", "leg")


def add_arguments(parser) -> None:
    parser.add_argument("--preset", choices=[*presets.PRESETS, "all"], default="all",
                        help="preset to describe (default: all)")
    parser.add_argument("--exact-rf", action="store_true",
                        help="receptive fields with the standard arithmetic instead of Table 1's")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def describe(preset: str, exact_rf: bool = False) -> list[dict]:
    """One dict per network of ``preset``: name, width, classes, input, params, GFLOP, fields.

    Args:
        preset: a name of ``presets.PRESETS``.
        exact_rf: standard receptive-field arithmetic instead of the paper's Table 1.
    """
    rows = []
    for name in NETWORKS:
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            if name == "classifier":
                model = presets.build_classifier(preset)
            else:
                model = presets.build_segmenter(name, preset)
        side = model.default_input_size
        rows.append({
            "preset": preset,
            "network": name if name == "classifier" else f"{name} segmenter",
            "width": model.config["width"],
            "classes": model.num_classes,
            "input": f"{side}x{side}",
            "parameters": presets.count_parameters(model),
            "gflop_per_slice": round(presets.gflops_per_slice(model), 3),
            "receptive_fields": presets.receptive_fields(
                model, "exact" if exact_rf else "paper"),
        })
    return rows


def run(args) -> int:
    names = list(presets.PRESETS) if args.preset == "all" else [args.preset]
    rows = [row for name in names for row in describe(name, args.exact_rf)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = f"{'preset':8} {'network':17} {'width':>5} {'cls':>3} {'input':>7} " \
             f"{'params':>8} {'GFLOP':>7}  receptive fields (px, per encoder block)"
    print(header)
    print("-" * len(header))
    for row in rows:
        fields = " / ".join(",".join(map(str, block)) for block in row["receptive_fields"])
        print(f"{row['preset']:8} {row['network']:17} {row['width']:>5} {row['classes']:>3} "
              f"{row['input']:>7} {row['parameters'] / 1e6:>7.2f}M {row['gflop_per_slice']:>7.1f}"
              f"  {fields}")
    print(f"\ndefault preset: {presets.DEFAULT_PRESET}; GFLOP = 2 x multiply-accumulates of "
          "conv/dense layers per slice; receptive fields: "
          + ("standard arithmetic" if args.exact_rf else "paper Table 1 arithmetic"
             " (--exact-rf: the standard one, smaller for the stride-3 block)"))
    return 0
