"""Where the app keeps its run-time state (all git-ignored)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "apps" / "muscle"
APP_MODEL_DIR = APP_DIR / "model"  # live (published) weights
EMBEDDED_STUDIES = ROOT / "studies"
WORKING_STUDIES = ROOT / "var" / "studies"  # what `python main.py` serves
