"""Recovery at start-up of saves a kill interrupted (``lib.data.datastore.safe`` writes them).

A save stages the label file and the index, renames the index (which names the label's SHA-256)
and then the label. Killed between the two renames, the index describes a file that is still a
hidden staged file next to its destination; ``roll_forward`` finishes the rename. It runs under
the datastore's file lock, so it never races a save in progress.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import time

from lib.files import commit_staged

logger = logging.getLogger(__name__)

STALE_STAGED_S = 3600  # a staged file older than this belongs to no save in progress


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def roll_forward(model, root: str) -> bool:
    """Finish interrupted label saves of a ``LocalDatastoreModel``; True when its index changed.

    A label whose file does not match the ``sha256`` its entry names gets the staged file of that
    digest renamed into place; with none, its info (which describes another file) is dropped, so
    training reads the label as "slices holding muscle, global values". Staged files older than
    ``STALE_STAGED_S`` under ``root`` (the studies folder) are removed.

    Args:
        model: the datastore's in-memory index (``LocalDatastoreModel``), changed in place.
        root: the studies folder.
    """
    changed = False
    for image_id, obj in model.objects.items():
        for tag, label in obj.labels.items():
            want = label.info.get("sha256")
            folder, name = model.label_path(tag), f"{image_id}{label.ext}"
            path = os.path.join(folder, name)
            if not want or (os.path.isfile(path) and file_sha256(path) == want):
                continue
            staged = [p for p in glob.glob(os.path.join(folder, f".{glob.escape(name)}.*.tmp"))
                      if file_sha256(p) == want]
            if staged:
                commit_staged(staged[0], path)
                logger.warning(f"Completed an interrupted save of {path}")
            else:
                label.info = {"ts": label.info.get("ts"), "name": name,
                              "recovered": "label file changed outside a save; its save info was dropped"}
                changed = True
                logger.error(f"{path} does not match its index entry; its save info was dropped")
    for staged in glob.glob(os.path.join(root, "**", ".*.tmp"), recursive=True):
        try:
            if time.time() - os.path.getmtime(staged) > STALE_STAGED_S:
                os.unlink(staged)
        except OSError:
            pass
    return changed
