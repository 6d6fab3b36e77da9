"""Speed benchmarks (``python -m bench.<name>``); results go to ``bench/results/``."""

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def save_results(name: str, data: dict, markdown: str) -> None:
    """``bench/results/<name>.json`` (the numbers) and ``<name>.md`` (their table)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)
