"""Which weight file each network uses: the live one, the shipped one, or a kept version.

Two places per network, as MONAI Label's radiology app does with its pretrained/published pair:
``weights/<network>.pt`` ships in the repository (made by ``python main.py pretrain``), and
``<model dir>/<network>.pt`` is the live model published by training at run time (git-ignored;
``apps/muscle/model`` unless ``--conf model_dir``). The live file wins when it exists; no weight
is ever downloaded. A run may ask for other weights (``ModelStore.weights``): ``shipped``, or kept
versions of ``python main.py models`` (``v3``, ``segmentation_thigh:v3``).

Weights travel as *candidates*: per network, the files to try in order of preference reversed
(``[shipped, live]``), resolved at each use by ``live_path``, so a file published after a task
was built is used by its next request.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from lib.errors import UserError
from lib.models.catalog import NETWORKS, weight_file
from lib.models.registry import KEEP_VERSIONS, ModelRegistry
from lib.paths import APP_MODEL_DIR, SHIPPED_WEIGHTS


def live_path(candidates) -> str | None:
    """The file to use among ``[shipped, live]``: the last one that exists (MONAI Label's rule)."""
    for path in reversed(list(candidates)):
        if path and Path(path).exists():
            return str(path)
    return None


def has_weights(paths: dict[str, list[str]]) -> bool:
    """Whether every network in ``paths`` has a weight file to use."""
    return all(live_path(candidates) for candidates in paths.values())


def live_weights(paths: dict[str, list[str]]) -> tuple[dict[str, str | None], str]:
    """The weight file each network uses now (published, else shipped), and their version key."""
    live = {name: live_path(candidates) for name, candidates in paths.items()}
    return live, weights_version(live)


def weights_version(files: dict[str, str]) -> str:
    """A key of the weight files: changes exactly when a network file changes."""
    parts = []
    for name in sorted(files):
        digest = hashlib.sha256(Path(files[name]).read_bytes()).hexdigest()[:12]
        parts.append(f"{name}:{digest}")
    return "+".join(parts)


class ModelStore:
    """The weights of one model folder and the shipped weights behind it.

    Args:
        model_dir: the app's live model folder (versions, splits and stats live there too);
            None: ``apps/muscle/model``.
        shipped: the folder of the shipped weights.
    """

    def __init__(self, model_dir=APP_MODEL_DIR, shipped=SHIPPED_WEIGHTS):
        self.model_dir = Path(model_dir or APP_MODEL_DIR)
        self.shipped = Path(shipped)

    def candidates(self, network: str) -> list[str]:
        """``[shipped, live]`` files of ``network`` (see the module doc)."""
        return [str(weight_file(self.shipped, network)), str(weight_file(self.model_dir, network))]

    def paths(self, networks=NETWORKS) -> dict[str, list[str]]:
        """Candidates of each network."""
        return {network: self.candidates(network) for network in networks}

    def registry(self, network: str, keep: int = KEEP_VERSIONS) -> ModelRegistry:
        """The published versions of ``network``."""
        return ModelRegistry(self.model_dir, network, weight_file(self.shipped, network), keep)

    def weights(self, model: str = "live") -> dict[str, list[str]]:
        """Candidates of every network for a run that asks for ``model``.

        ``live`` (what the server serves), ``shipped`` (``weights/``), or kept versions:
        ``NETWORK:vN`` or ``vN`` (each network that kept version N), several separated by
        commas; the other networks stay live. A ``UserError`` names a wrong or missing version.
        """
        live = self.paths()
        if model == "live":
            return live
        if model == "shipped":
            return {n: [str(weight_file(self.shipped, n))] for n in NETWORKS}
        chosen = dict(live)
        for part in filter(None, (p.strip() for p in str(model).split(","))):
            match = re.fullmatch(r"(?:(\w+):)?v(\d+)", part)
            if not match or (match.group(1) and match.group(1) not in NETWORKS):
                raise UserError(f"--model {part!r}: expected live, shipped, vN or NETWORK:vN "
                                f"(NETWORK one of {', '.join(NETWORKS)})")
            networks = [match.group(1)] if match.group(1) else NETWORKS
            version = int(match.group(2))
            found = [n for n in networks if self.registry(n).version_file(version).is_file()]
            if not found:
                raise UserError(f"--model {part}: no kept version {version} in {self.model_dir / 'versions'} "
                                "(see `python main.py models`)")
            for n in found:
                chosen[n] = [str(self.registry(n).version_file(version))]
        return chosen
