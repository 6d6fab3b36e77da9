"""Where the repository keeps what the app reads, and where the app keeps its run-time state.

Every module that needs a folder of the checkout asks here, so moving a module never changes
what a ``Path(__file__).parents[n]`` points to.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP_DIR = ROOT / "apps" / "muscle"
APP_MODEL_DIR = APP_DIR / "model"  # live (published) weights, versions, splits: git-ignored
SHIPPED_WEIGHTS = ROOT / "weights"  # the default weights `python main.py pretrain` makes, committed
EMBEDDED_STUDIES = ROOT / "studies"  # the embedded default datastore, committed
WORKING_STUDIES = ROOT / "var" / "studies"  # what `python main.py` serves: git-ignored
SHARED_DATA = ROOT.parent / "shared" / "data"  # the real labelled slice, beside the checkout
