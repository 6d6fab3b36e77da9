"""Published model versions: the live file, the last K versions with their metrics, rollback.

Layout under the app's model folder (``apps/muscle/model`` unless ``--conf model_dir``)::

    <network>.pt                      the live weights infer tasks load (absent: shipped weights)
    versions/<network>/v0003.pt       every published version, the newest K kept
    versions/<network>/v0003.json     its metrics: scores of candidate and predecessor, data, time
    versions/<network>/history.json   publish / reject / rollback events, newest last

The live file is only ever replaced by ``os.replace`` of a complete file in the same folder,
so a reader (inference, a killed training) sees the old or the new weights, never a mix.
Inference notices a new file by its modification time, without a restart.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from lib.errors import NotFoundError, UserError
from lib.files import copy_atomic, write_json_atomic
from lib.models.catalog import weight_file

KEEP_VERSIONS = 5


class ModelRegistry:
    """Versions of one network (``classifier``, ``segmentation_thigh`` ...) in a model folder.

    Args:
        model_dir: the app's live model folder.
        network: the network's file stem.
        shipped: the shipped weights used while nothing was published (``weights/<network>.pt``).
        keep: how many published versions to keep on disk.
    """

    def __init__(self, model_dir, network: str, shipped, keep: int = KEEP_VERSIONS):
        self.model_dir = Path(model_dir)
        self.network = network
        self.shipped = Path(shipped)
        self.keep = max(1, int(keep))
        self.live = weight_file(self.model_dir, network)
        self.folder = self.model_dir / "versions" / network

    def version_file(self, version: int) -> Path:
        """Where version ``version`` is kept (whether or not it exists)."""
        return self.folder / f"v{version:04d}.pt"

    def current(self) -> Path:
        """The weights inference uses now."""
        return self.live if self.live.is_file() else self.shipped

    def versions(self) -> list[dict]:
        """Kept versions, oldest first, each ``{"version", "path", "live", ...metrics}``."""
        out = []
        live_bytes = self.live.read_bytes() if self.live.is_file() else None
        for meta_path in sorted(self.folder.glob("v*.json")):
            pt = meta_path.with_suffix(".pt")
            if not pt.is_file():
                continue
            meta = json.loads(meta_path.read_text())
            meta.update(path=str(pt), live=live_bytes is not None and pt.read_bytes() == live_bytes)
            out.append(meta)
        return out

    def history(self) -> list[dict]:
        path = self.folder / "history.json"
        return json.loads(path.read_text()) if path.is_file() else []

    def record(self, event: dict) -> None:
        """Append a publish / reject / rollback event to the history."""
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.folder / "history.json", [*self.history(), {"time": time.time(), **event}])

    def _next_version(self) -> int:
        numbers = [int(p.stem[1:]) for p in self.folder.glob("v*.pt") if p.stem[1:].isdigit()]
        return max([0, *numbers, *[e.get("version", 0) for e in self.history()]]) + 1

    def publish(self, candidate: Path, metrics: dict) -> int:
        """Make ``candidate`` (a checkpoint file) the live model; returns its version number."""
        self.folder.mkdir(parents=True, exist_ok=True)
        version = self._next_version()
        stored = self.version_file(version)
        copy_atomic(candidate, stored)
        write_json_atomic(stored.with_suffix(".json"), {"version": version, "time": time.time(), **metrics})
        copy_atomic(stored, self.live)
        self.record({"event": "publish", "version": version, **{k: metrics[k] for k in ("live_score", "candidate_score") if k in metrics}})
        self._prune()
        return version

    def rollback(self, version: int | None = None) -> dict:
        """Make an earlier version live again: ``version``, or the one before the live one.

        Rolling back past the first kept version restores the shipped weights.
        """
        kept = self.versions()
        if version is None:
            live_index = next((i for i, v in enumerate(kept) if v["live"]), None)
            if live_index is None:
                raise UserError(f"{self.network}: nothing published, the shipped weights are live")
            target = kept[live_index - 1] if live_index > 0 else None
        else:
            target = next((v for v in kept if v["version"] == version), None)
            if target is None:
                raise NotFoundError(f"{self.network}: no kept version {version} "
                                    f"(kept: {[v['version'] for v in kept] or 'none'})")
        if target is None:
            self.live.unlink(missing_ok=True)  # back to the shipped weights
            event = {"event": "rollback", "version": 0, "to": "shipped"}
        else:
            copy_atomic(Path(target["path"]), self.live)
            event = {"event": "rollback", "version": target["version"]}
        self.record(event)
        return event

    def _prune(self) -> None:
        kept = sorted(self.folder.glob("v*.pt"))
        for old in kept[: max(0, len(kept) - self.keep)]:
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)
