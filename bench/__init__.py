"""Speed benchmarks (``python -m bench.<name>``); results go to ``bench/results/``."""

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# Server option for benches that time one request: background slice scoring would share the 2 cores
# with it (and write into the studies folder while the bench removes it).
NO_BACKGROUND_SCORING = ["--conf", "auto_score_slices", "false"]


def save_results(name: str, data: dict, markdown: str) -> None:
    """``bench/results/<name>.json`` (the numbers) and ``<name>.md`` (their table)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)
