"""MONAI Label's ``LocalDatastore`` made safe for a shared server: atomic, durable, serialised.

What 0.8.5's ``LocalDatastore`` does, and why each is replaced here:

- it writes ``datastore_v2.json`` with ``open(path, "w")``: a server killed mid-write leaves a
  truncated index, and the next start fails on it. Here the index is written to a temporary
  file, fsync'ed and renamed; an index that still cannot be read (an older crash, a hand edit)
  is moved aside as ``datastore_v2.json.corrupt-<time>`` and rebuilt from the files, so the
  server starts and no label file is lost (their extra info, e.g. ``annotated_slices``, is);
- it copies labels and uploads with ``shutil.copy`` over the stored file: a kill mid-copy left a
  half label. Here the new file and the new index are both staged (written, fsync'ed) first and
  renamed after, so a full disk fails the save before anything stored changed. The index is
  renamed first and records the label's SHA-256; a kill between the two renames leaves the
  staged label next to its destination, and the next start completes the rename
  (``lib.data.datastore.recovery.roll_forward``): a label file never pairs with another save's info
  (its ``label_info`` segment mapping, its ``annotated_slices``);
- it mutates the in-memory index and writes it whole: the background process (training,
  slice scoring) holds its own copy, so one process's write silently dropped the other's
  (a label saved while scores were written). Here every change is read-modify-write under the
  datastore's file lock: the index is re-read when the file changed (inode, size, mtime), then
  changed and written before the lock is released.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock
from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore, LocalDatastoreModel
from monailabel.interfaces.exception import ImageNotFoundException, LabelNotFoundException

from lib.data.datastore.recovery import file_sha256, roll_forward
from lib.errors import StorageFullError
from lib.files import commit_staged, stage_bytes

logger = logging.getLogger(__name__)


@contextmanager
def _disk_full_as_storage_error(what: str):
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFullError(exc.errno, f"no space left on the server's disk: {what} was not saved") from None
        raise


class SafeLocalDatastore(LocalDatastore):
    """``LocalDatastore`` with atomic durable writes and cross-process read-modify-write."""

    def __init__(self, *args, **kwargs):
        self._index_key = None  # (inode, size, mtime_ns) of the index file last read or written
        self._flock = None
        super().__init__(*args, **kwargs)
        if getattr(self, "_handler", None) is not None:  # the file watcher of auto_reload
            self._handler.on_moved = self._on_moved
        if not kwargs.get("read_only", False):
            with self._file_lock():
                self._init_from_datastore_file()
                if roll_forward(self._datastore, self._datastore_path):
                    self._update_datastore_file()

    def _reconcile_datastore(self):
        with self._file_lock():  # one consistent look at the files and the index
            super()._reconcile_datastore()

    def _on_moved(self, event):
        """Atomic writes arrive as renames, which 0.8.5's watcher ignores: reload or refresh."""
        if event.dest_path == self._datastore_config_path:
            self._init_from_datastore_file()
        else:
            self._on_any_event(event)

    # -- the index file ------------------------------------------------------------------
    def _file_lock(self) -> FileLock:
        if self._flock is None:  # one object: FileLock is reentrant per object (and per thread)
            self._flock = FileLock(self._lock_file)
        return self._flock

    def _stat_key(self):
        try:
            st = os.stat(self._datastore_config_path)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _init_from_datastore_file(self, throw_exception=False):
        """Re-read the index when another writer changed it; move an unreadable one aside."""
        with self._file_lock():
            key = self._stat_key()
            if key is None or key == self._index_key:
                return
            try:
                text = Path(self._datastore_config_path).read_text()
                model = LocalDatastoreModel.model_validate_json(text)
            except (ValueError, UnicodeDecodeError) as exc:
                aside = f"{self._datastore_config_path}.corrupt-{int(time.time())}"
                os.replace(self._datastore_config_path, aside)
                logger.error(f"Unreadable datastore index moved to {aside} ({str(exc).splitlines()[0]}); "
                             f"rebuilding it from the files")
                model = LocalDatastoreModel(name="new-dataset", description="New Dataset",
                                            images_dir=self._datastore.images_dir,
                                            labels_dir=self._datastore.labels_dir)
                key = None
            model.base_path = self._datastore_path
            self._datastore, self._index_key = model, key

    def _stage_index(self) -> Path:
        text = json.dumps(self._datastore.model_dump(exclude={"base_path"}), indent=2, default=str)
        with _disk_full_as_storage_error("the datastore index"):
            return stage_bytes(self._datastore_config_path, text.encode())

    def _commit_index(self, staged: Path) -> None:
        self._ignore_event_config = True  # our own write: the file watcher need not reload it
        commit_staged(staged, self._datastore_config_path)
        self._index_key = self._stat_key()
        self._config_ts = os.stat(self._datastore_config_path).st_mtime

    def _update_datastore_file(self, lock=True):
        with self._file_lock():
            self._commit_index(self._stage_index())

    @contextmanager
    def _transaction(self):
        """Lock, bring the in-memory index up to date, let the caller change it, write it."""
        with self._file_lock():
            self._init_from_datastore_file()
            yield
            self._update_datastore_file()

    # -- changes -------------------------------------------------------------------------
    def _store(self, src: str, dest: str, change, what: str) -> None:
        """Stage ``src`` as ``dest`` and the changed index, then rename both (file first)."""
        with self._file_lock():
            self._init_from_datastore_file()
            with _disk_full_as_storage_error(what):
                staged_file = stage_bytes(dest, src=src)
            try:
                change()
                staged_index = self._stage_index()
            except BaseException:
                staged_file.unlink(missing_ok=True)
                self._index_key = None  # the in-memory change is undone by re-reading the file
                self._init_from_datastore_file()
                raise
            self._commit_index(staged_index)  # first: it names the file's digest (see roll_forward)
            commit_staged(staged_file, dest)

    def add_image(self, image_id: str, image_filename: str, image_info) -> str:
        name_id, ext = self._to_id(os.path.basename(image_filename))
        image_id = image_id or name_id
        name = self._filename(image_id, ext)
        info = {**(image_info or {}), "ts": int(time.time()), "name": name}

        def change():
            self._datastore.objects[image_id] = ImageLabelModel(image=DataModel(info=info, ext=ext))

        self._store(image_filename, os.path.join(self._datastore.image_path(), name), change, "the image")
        return image_id

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info) -> str:
        tag = getattr(label_tag, "value", label_tag)
        _, ext = self._to_id(os.path.basename(label_filename))
        name = self._filename(image_id, ext)
        info = {**(label_info or {}), "ts": int(time.time()), "name": name, "sha256": file_sha256(label_filename)}

        def change():
            obj = self._datastore.objects.get(image_id)
            if not obj:
                raise ImageNotFoundException(f"Image {image_id} not found")
            obj.labels[tag] = DataModel(info=info, ext=ext)

        os.makedirs(self._datastore.label_path(tag), exist_ok=True)
        self._store(label_filename, os.path.join(self._datastore.label_path(tag), name), change, "the label")
        return image_id

    def update_image_info(self, image_id: str, info) -> None:
        with self._transaction():
            obj = self._datastore.objects.get(image_id)
            if not obj:
                raise ImageNotFoundException(f"Image {image_id} not found")
            obj.image.info.update(info)

    def update_label_info(self, label_id: str, label_tag: str, info) -> None:
        with self._transaction():
            label = self._datastore.label(label_id, label_tag)
            if not label:
                raise LabelNotFoundException(f"Label: {label_id} Tag: {label_tag} not found")
            label.info.update(info)
