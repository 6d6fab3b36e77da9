"""``python main.py bench``: run the speed benchmarks and write ``bench/results/``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lib.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
BENCHES = {"networks": "bench.bench_networks", "infer": "bench.bench_infer", "incremental": "bench.bench_incremental",
           "active_learning": "bench.bench_active_learning"}


def add_arguments(parser):
    parser.add_argument("names", nargs="*", help=f"which benchmarks (default: all of {', '.join(BENCHES)})")


def run(args) -> int:
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        raise UserError(f"unknown benchmark {unknown[0]!r}: expected one of {', '.join(BENCHES)}")
    for name in args.names or BENCHES:
        print(f"== {name}", flush=True)
        code = subprocess.call([sys.executable, "-m", BENCHES[name]], cwd=ROOT)
        if code:
            return code
    return 0
