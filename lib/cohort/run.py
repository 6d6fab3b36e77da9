"""Segment the studies of a cohort one by one, resumably, and keep a record of each.

Per study, in the output folder:

- ``labels/<id>.nii.gz``: the label map on the study's own grid (per-side values with
  ``split_sides``), written to a hidden temporary file, synced and renamed;
- ``records/<id>.json``: what the cohort tables are made of (region, flagged slices, per-muscle
  and per-side measurements, fat fraction) and what makes it current: the input hash
  (``lib.cohort.sources.input_hash``), the model version (``lib.models.store.live_weights``: a
  hash of the weight files) and the settings that change results. Written atomically and synced
  after the label, so a record on disk always has its label. A failed study's record holds its
  error instead.

A study whose record is current and whose label exists is skipped; any other is segmented again
(a run killed with ``kill -9`` loses at most the studies in flight). The engine is
``lib.inference.pipeline.segment_muscles_in``, the ``muscle`` answer with the server's default
options; the table's sides come from the image's world coordinates as for ``split_sides``
(``lib.transforms.postprocess.split_sides``), measured as the JSON answer is
(``lib.inference.measurements.measure_labels``). One study's measuring and writing runs in a
second thread while the next study's networks run, so that no core idles meanwhile.

Fat fraction (Dixon pairs, ``lib.cohort.sources.pair_dixon``): per voxel ``F / (W + F)`` where
``W + F > 0``, clipped to 0..1, averaged over each muscle's voxels (a fraction, not per cent).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from lib.cohort.sources import Study, input_hash
from lib.errors import UserError
from lib.files import commit_staged, write_json_atomic
from lib.inference.measurements import measure_labels
from lib.inference.pipeline import label_volume, save_label_nifti, segment_muscles_in
from lib.labels import side_labels
from lib.models.store import live_weights
from lib.transforms.geometry import axial_axis
from lib.transforms.loading import load_volume
from lib.transforms.postprocess import split_sides

RECORD_FORMAT = 1
SIDED_NAMES = side_labels()
SUMMARY_DROPPED = ("slices", "prediction")  # per-slice lists of the classification: bulky, not cohort-level


@dataclass
class CohortRun:
    """What a cohort run does to every study.

    out: the output folder; weights: each network's candidate files (``lib.models.store``);
    device: ``cpu`` or ``cuda[:N]``; split_sides: per-side values in the label files (the tables
    always have sides); slices: only these slice indices (None: all); fat_fraction: the
    (WATER, FAT) name tags of Dixon pairs, or None.
    """

    out: Path
    weights: dict[str, list[str]]
    device: str = "cpu"
    split_sides: bool = False
    slices: list[int] | None = None
    fat_fraction: tuple[str, str] | None = None
    weight_files: dict[str, str] = field(init=False)
    model_version: str = field(init=False)

    def __post_init__(self):
        self.out = Path(self.out)
        self.weight_files, self.model_version = live_weights(self.weights)

    @property
    def settings(self) -> dict:
        """The options that change a study's results (a change makes every record stale)."""
        return {"model": "muscle", "split_sides": bool(self.split_sides), "slices": self.slices,
                "fat_fraction": list(self.fat_fraction) if self.fat_fraction else None}

    def record_path(self, study_id: str) -> Path:
        return self.out / "records" / f"{study_id}.json"

    def label_path(self, study_id: str) -> Path:
        return self.out / "labels" / f"{study_id}.nii.gz"


def read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # none yet, or unreadable: the study is done again
    return record if isinstance(record, dict) else None


def is_current(record: dict | None, digest: str, run: CohortRun) -> bool:
    """Whether ``record`` is a finished study of this input, model version and settings."""
    return bool(record) and record.get("status") == "done" and record.get("format") == RECORD_FORMAT \
        and record.get("input_hash") == digest and record.get("model_version") == run.model_version \
        and record.get("settings") == run.settings and run.label_path(record.get("id", "")).is_file()


def flagged_slices(classification: dict) -> list[int]:
    """The slices the routing flags: those where the classifier disagrees with the region split."""
    return list(classification.get("disagreeing_slices") or [])


def fat_fraction_means(label: np.ndarray, water: np.ndarray, fat: np.ndarray) -> dict[int, float]:
    """Mean voxel fat fraction ``F / (W + F)`` (0..1) per label value (module doc)."""
    total = water.astype(np.float64) + fat
    where = np.flatnonzero((label > 0) & (total > 0))
    values = label.ravel()[where].astype(np.int64)
    ff = np.clip(fat.ravel()[where] / total.ravel()[where], 0.0, 1.0)
    sums = np.bincount(values, weights=ff)
    counts = np.bincount(values)
    return {int(v): round(float(sums[v] / counts[v]), 4) for v in np.flatnonzero(counts)}


def _same_grid(image, other) -> bool:
    return tuple(image.shape) == tuple(other.shape) and np.allclose(np.asarray(image.affine), np.asarray(other.affine),
                                                                    atol=1e-3)


def fetch_series(study: Study, client, folder: Path) -> Path:
    """Download a DICOMweb study's series into ``folder`` (one file per instance)."""
    try:
        datasets = client.retrieve_series(study.info["study_uid"], study.info["series_uid"])
    except Exception as exc:
        raise UserError(f"{study.id}: the series could not be downloaded ({str(exc).splitlines()[0]})") from None
    folder.mkdir(parents=True, exist_ok=True)
    for i, ds in enumerate(datasets):
        ds.save_as(str(folder / f"{i:05d}.dcm"), write_like_original=False)
    return folder


def write_label(path: Path, label: np.ndarray, affine: np.ndarray) -> None:
    """The label file, synced, renamed into place (a reader never sees part of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name[:-7]}.{secrets.token_hex(4)}.tmp.nii.gz")
    try:
        save_label_nifti(str(tmp), label, affine)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    commit_staged(tmp, path, durable=True)


def sides(label: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``split_sides`` of the label, computed on the box that holds muscle (same answer: a voxel's
    side depends on world positions and the muscle labels only, all inside the box; a third of
    the time)."""
    found = np.nonzero(label)
    out = np.asarray(label).astype(np.uint8)
    if not found[0].size:
        return out.copy()
    low = [int(a.min()) for a in found]
    box = tuple(slice(lo, int(a.max()) + 1) for lo, a in zip(low, found))
    shifted = np.array(affine, dtype=np.float64)
    shifted[:3, 3] = shifted[:3, :3] @ np.array(low, dtype=np.float64) + shifted[:3, 3]
    out = out.copy()
    out[box] = split_sides(out[box], shifted)
    return out


def measurement_rows(sided: np.ndarray, image: np.ndarray, affine: np.ndarray, fat=None) -> list[dict]:
    """One row per muscle and side present in the per-side label: the JSON answer's measurements
    (and the mean fat fraction)."""
    measured = measure_labels(sided, image, affine, SIDED_NAMES, slice_axis=axial_axis(affine))
    ff = fat_fraction_means(sided, image, fat) if fat is not None else {}
    rows = []
    for name, m in sorted(measured.items(), key=lambda item: item[1]["value"]):
        muscle, _, side = name.rpartition("_")
        if side not in ("right", "left"):
            muscle, side = name, ""
        row = {"muscle": muscle, "side": side, **m}
        if fat is not None:
            row["fat_fraction"] = ff.get(m["value"])
        rows.append(row)
    return rows


def segment_study(study: Study, run: CohortRun, digest: str, client=None) -> Callable[[], dict]:
    """The networks on one study; returns ``finish()``, which measures, writes the label and
    returns the study's record (not yet written). ``finish`` may run in another thread while the
    next study is segmented."""
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="cohort_") as tmp:
        source = Path(study.source)
        if study.kind == "dicomweb":
            source = fetch_series(study, client, Path(tmp) / "series")
        elif not source.exists():
            raise UserError(f"no such file or folder: {source}")
        data = segment_muscles_in(str(source), run.weights, slices=run.slices, device=run.device)
    segmented = time.time() - start

    def finish() -> dict:
        begin = time.time()
        label, affine = label_volume(data)
        original = data["image_original"]
        fat = None
        if study.fat:
            fat_image = load_volume(study.fat)
            if not _same_grid(original, fat_image):
                raise UserError(f"{study.id}: the fat image {Path(study.fat).name} is on another grid "
                                f"({tuple(fat_image.shape[1:])}) than the water image ({tuple(original.shape[1:])})")
            fat = np.asarray(fat_image)[0]
        sided = sides(label, affine)
        rows = measurement_rows(sided, np.asarray(original)[0], affine, fat)
        write_label(run.label_path(study.id), sided if run.split_sides else label, affine)
        classification = dict((data.get("result") or {}).get("classification") or {})
        meta = getattr(original, "meta", {}) or {}
        return {
            "format": RECORD_FORMAT, "id": study.id, "status": "done", "source": study.source, "kind": study.kind,
            "fat_image": study.fat or None, "info": study.info, "input_hash": digest,
            "model_version": run.model_version, "settings": run.settings, "device": run.device,
            "label": f"labels/{study.id}.nii.gz",
            "label_values": "side" if run.split_sides else "muscle",
            "shape": [int(s) for s in label.shape],
            "spacing_mm": [round(float(s), 4) for s in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)],
            "volume": str(meta.get("volume", "")),
            "region": classification.get("region"),
            "flagged_slices": flagged_slices(classification),
            "classification": {k: v for k, v in classification.items() if k not in SUMMARY_DROPPED},
            "measurements": rows,
            "seconds": round(segmented + time.time() - begin, 2),  # its own work, not the wait for the writer
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    return finish


def failure_record(study: Study, run: CohortRun, error: Exception, digest: str = "") -> dict:
    message = (str(getattr(error, "msg", None) or error).strip().splitlines() or [""])[0]
    if not isinstance(error, UserError):
        message = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return {"format": RECORD_FORMAT, "id": study.id, "status": "failed", "source": study.source, "kind": study.kind,
            "fat_image": study.fat or None, "info": study.info, "input_hash": digest,
            "model_version": run.model_version, "settings": run.settings, "error": message,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}


TEMPORARY = re.compile(r"^\.(?P<id>.+)(?:\.[0-9a-f]{8}\.tmp\.nii\.gz|\.json\.[^.]+\.tmp)$")  # write_label, lib.files


def remove_stale_temporaries(run: CohortRun, studies: list[Study]) -> None:
    """Hidden temporary files a killed run of these studies left behind (other shards' are kept)."""
    ids = {s.id for s in studies}
    for folder in (run.out / "labels", run.out / "records"):
        if folder.is_dir():
            for entry in os.scandir(folder):
                match = TEMPORARY.match(entry.name)
                if match and match["id"] in ids:
                    Path(entry.path).unlink(missing_ok=True)


def _identity(items, **_):
    return items


def run_studies(studies: list[Study], run: CohortRun, bar: Callable = _identity, client=None,
                redo: bool = False, on_error: Callable[[str], None] | None = None) -> dict:
    """Segment every study that is not current; returns ``{"records": [...], "skipped": n,
    "segmented": n, "failed": n}`` with one record per study, in the order given.

    bar: wraps an iterable to show progress (``tqdm``), called with ``desc`` and ``total``;
    redo: segment every study again; on_error: told each failure as it happens.
    """
    remove_stale_temporaries(run, studies)
    records: dict[str, dict] = {}
    todo: list[tuple[Study, str]] = []
    skipped = 0

    def failed(study: Study, error: Exception, digest: str = "") -> dict:
        record = failure_record(study, run, error, digest)
        if on_error:
            on_error(f"{study.id}: {record['error']}")
        return record

    for study in bar(studies, desc="checking", total=len(studies), unit="study"):
        try:
            digest = input_hash(study, client)
        except Exception as exc:  # an unreadable study is reported, the others go on
            records[study.id] = failed(study, exc)
            write_json_atomic(run.record_path(study.id), records[study.id], durable=True)
            continue
        record = read_record(run.record_path(study.id))
        if not redo and is_current(record, digest, run):
            records[study.id] = record
            skipped += 1
        else:
            todo.append((study, digest))
    def collect(study: Study, digest: str, finishing) -> None:
        try:
            record = finishing.result()
        except Exception as exc:  # an unreadable study is reported, the others go on
            record = failed(study, exc, digest)
        write_json_atomic(run.record_path(study.id), record, durable=True)
        records[study.id] = record

    # one study's measuring and writing overlaps the next one's networks (a core would idle)
    with ThreadPoolExecutor(1, thread_name_prefix="cohort-finish") as finisher:
        pending = None
        for study, digest in bar(todo, desc="segmenting", total=len(todo), unit="study"):
            try:
                finish = segment_study(study, run, digest, client)
            except Exception as exc:  # an unreadable study is reported, the others go on
                records[study.id] = failed(study, exc, digest)
                write_json_atomic(run.record_path(study.id), records[study.id], durable=True)
                continue
            if pending:
                collect(*pending)
            pending = (study, digest, finisher.submit(finish))
        if pending:
            collect(*pending)
    ordered = [records[s.id] for s in studies]
    done = sum(r.get("status") == "done" for r in ordered)
    return {"records": ordered, "skipped": skipped, "segmented": done - skipped, "failed": len(ordered) - done}
