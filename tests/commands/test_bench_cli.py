"""``python main.py bench``: one table from the benchmark results; unknown names are a clear error."""

import subprocess
import sys

from bench import summary
from tests.conftest import ROOT


def test_table_has_a_line_per_measured_quantity():
    text = summary.markdown()
    assert text.startswith("# Benchmarks") and "Machine: " in text
    lines = summary.table_lines()
    sources = {line[-1] for line in lines}
    for name in ("networks", "infer", "incremental"):  # results committed in bench/results
        assert name in sources
    assert any(line[0] == "`POST /infer/muscle`, paper" for line in lines)
    assert any("fp32 eager" == line[1] for line in lines) and any(line[1].startswith("fast") for line in lines)
    for line in lines:
        assert f"| {line[0]} |" in text


def test_unknown_benchmark_is_a_one_line_error():
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "bench", "warp_speed"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown benchmark 'warp_speed'" in proc.stderr and "Traceback" not in proc.stderr
