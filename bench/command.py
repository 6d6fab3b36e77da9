"""``python main.py bench``: run the speed benchmarks and write one table of them.

    python main.py bench                  # every benchmark, then bench/results/summary.md
    python main.py bench infer scoring    # some of them, then the table again
    python main.py bench summary          # only rewrite the table from the results on disk

Each benchmark runs as its own process; its wall time and the peak resident memory of its
process tree (the servers it starts included) go to ``bench/results/runs.json``. The command
lives with the benchmarks, not in ``lib/commands``: the product does not depend on its
benchmarks (``main.py`` names this module for ``bench``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import RESULTS
from bench.summary import write
from lib.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
BENCHES = {"networks": "bench.bench_networks", "infer": "bench.bench_infer", "incremental": "bench.bench_incremental",
           "scoring": "bench.bench_scoring", "concurrency": "bench.bench_concurrency",
           "active_learning": "bench.bench_active_learning", "cohort": "bench.bench_cohort",
           "real": "bench.bench_real"}


def add_arguments(parser):
    parser.add_argument("names", nargs="*",
                        help=f"which benchmarks (default: all of {', '.join(BENCHES)}); 'summary': only the table")


def run_one(name: str) -> tuple[int, dict]:
    """Run one benchmark module; return its exit code and {seconds, peak_rss_mb, date}."""
    start = time.time()
    process = subprocess.Popen([sys.executable, "-m", BENCHES[name]], cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)  # usage covers the waited-for descendants too
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, {"seconds": round(time.time() - start, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024),
                                "date": time.strftime("%Y-%m-%d")}


def record(name: str, entry: dict) -> None:
    path = RESULTS / "runs.json"
    runs = json.loads(path.read_text()) if path.is_file() else {}
    runs[name] = entry
    path.write_text(json.dumps(runs, indent=2))


def run(args) -> int:
    names = [n for n in args.names if n != "summary"]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        raise UserError(f"unknown benchmark {unknown[0]!r}: expected one of {', '.join(BENCHES)} or summary")
    if not names and "summary" not in args.names:
        names = list(BENCHES)
    for name in names:
        print(f"== {name}", flush=True)
        code, entry = run_one(name)
        if code:
            return code
        record(name, entry)
    print(write())
    return 0
