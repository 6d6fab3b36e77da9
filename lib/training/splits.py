"""A fixed, growing train/validation split of the datastore's images.

MONAI Label's stock trainer reshuffles train and validation on every run, so a slice that
validated one round trains the next and the publish guard measures on seen data. Here each
image is assigned once, when a round first sees it, and the assignment is written to
``splits.json`` in the model folder and never changed:

- by a hash of its image id (``val_fraction`` of ids go to validation), so the rule does
  not depend on the order images arrive;
- except that while no image trains yet, a new image trains: the first corrected image is
  what the user wants the model to learn, and validation still has the phantom set.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lib.files import write_json_atomic

VAL_FRACTION = 0.2


def hashed_to_validation(image_id: str, val_fraction: float) -> bool:
    digest = hashlib.sha256(image_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction


class SplitBook:
    """The persistent assignment ``image id -> "train" | "val"``."""

    def __init__(self, path, val_fraction: float = VAL_FRACTION):
        self.path = Path(path)
        self.val_fraction = float(val_fraction)
        self.assigned: dict[str, str] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def assign(self, image_ids) -> dict[str, str]:
        """The split of each id, assigning new ids (sorted, so the outcome is reproducible)."""
        changed = False
        for image_id in sorted(image_ids):
            if image_id in self.assigned:
                continue
            has_train = "train" in self.assigned.values()
            to_val = has_train and hashed_to_validation(image_id, self.val_fraction)
            self.assigned[image_id] = "val" if to_val else "train"
            changed = True
        if changed:
            write_json_atomic(self.path, self.assigned, sort_keys=True)
        return {i: self.assigned[i] for i in image_ids}
