"""The cohort tables a run writes from its studies' records, and the merge of a sharded run's tables.

- ``measurements.csv``: one row per study, muscle and side: ``study, muscle, side, value, voxels,
  volume_ml, max_area_mm2, slices, mean, std, fat_fraction`` (the JSON answer's measurements;
  ``slices``: how many slices hold the muscle; ``value``: the per-side label value, left =
  muscle + 18; ``fat_fraction`` empty without Dixon pairs);
- ``cohort.json``: the run (source, part, model version and weight files, settings, counts), one
  entry per study (region, flagged slices, the classification summary, label file, DICOM
  volume note) and the errors;
- ``errors.csv``: ``study, source, error``, one row per study that failed (the header alone
  when none did).

A shard (``--num-parts`` > 1) writes ``measurements.part-<i>-of-<n>.csv`` and so on, so that
shards may share one output folder; ``merge_parts`` joins them into the three plain names,
after checking that every part is there, once, made by the same model and settings.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

from lib.errors import UserError
from lib.files import write_bytes_atomic, write_json_atomic

COLUMNS = ("study", "muscle", "side", "value", "voxels", "volume_ml", "max_area_mm2", "slices", "mean", "std",
           "fat_fraction")
ERROR_COLUMNS = ("study", "source", "error")
PART_NAME = re.compile(r"cohort\.part-(\d+)-of-(\d+)\.json")


def table_names(part: int = 0, parts: int = 1) -> dict[str, str]:
    suffix = f".part-{part}-of-{parts}" if parts > 1 else ""
    return {"measurements": f"measurements{suffix}.csv", "cohort": f"cohort{suffix}.json",
            "errors": f"errors{suffix}.csv"}


def measurement_rows(records: list[dict]) -> list[dict]:
    rows = []
    for record in records:
        if record.get("status") != "done":
            continue
        for m in record.get("measurements", []):
            fat = m.get("fat_fraction")
            rows.append({"study": record["id"], "muscle": m["muscle"], "side": m["side"], "value": m["value"],
                         "voxels": m["voxels"], "volume_ml": m["volume_ml"], "max_area_mm2": m["max_area_mm2"],
                         "slices": len(m.get("area_mm2_per_slice", {})), "mean": m.get("mean", ""),
                         "std": m.get("std", ""), "fat_fraction": "" if fat is None else fat})
    return rows


def csv_text(columns, rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def study_entry(record: dict) -> dict:
    """A study's line of ``cohort.json``."""
    entry = {"id": record["id"], "status": record.get("status"), "source": record.get("source"), **(
        {"fat_image": record["fat_image"]} if record.get("fat_image") else {}), **(
        {"info": record["info"]} if record.get("info") else {})}
    if record.get("status") == "done":
        entry.update({"region": record.get("region"), "flagged_slices": record.get("flagged_slices", []),
                      "label": record.get("label"), "volume": record.get("volume") or None,
                      "shape": record.get("shape"), "spacing_mm": record.get("spacing_mm"),
                      "classification": record.get("classification", {}), "seconds": record.get("seconds"),
                      "finished": record.get("finished")})
    else:
        entry["error"] = record.get("error")
    return entry


def write_tables(records: list[dict], out, run: dict, part: int = 0, parts: int = 1) -> dict[str, Path]:
    """Write the three tables of these records (module doc); returns their paths by kind.

    run: what ``cohort.json`` says about the run (source, model version, settings, counts ...).
    """
    out = Path(out)
    names = table_names(part, parts)
    failed = [r for r in records if r.get("status") != "done"]
    errors = [{"study": r["id"], "source": r.get("source", ""), "error": r.get("error", "")} for r in failed]
    cohort = {**run, "part": {"id": part, "of": parts},
              "counts": {"studies": len(records), "done": len(records) - len(failed), "failed": len(failed),
                         **run.get("counts", {})},
              "studies": [study_entry(r) for r in records], "errors": errors}
    paths = {kind: out / name for kind, name in names.items()}
    write_bytes_atomic(paths["measurements"], csv_text(COLUMNS, measurement_rows(records)).encode())
    write_bytes_atomic(paths["errors"], csv_text(ERROR_COLUMNS, errors).encode())
    write_json_atomic(paths["cohort"], cohort)
    return paths


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def find_parts(folders) -> dict[int, tuple[Path, dict]]:
    """Every part's ``cohort.part-<i>-of-<n>.json`` in ``folders`` by part id; one ``n`` for all."""
    parts: dict[int, tuple[Path, dict]] = {}
    counts = set()
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise UserError(f"no such folder: {folder}")
        for entry in sorted(os.listdir(folder)):
            match = PART_NAME.fullmatch(entry)
            if not match:
                continue
            part, of = int(match[1]), int(match[2])
            counts.add(of)
            if part in parts and parts[part][0] != folder:
                raise UserError(f"part {part} is in two folders: {parts[part][0]} and {folder}")
            try:
                parts[part] = (folder, json.loads((folder / entry).read_text()))
            except ValueError as exc:
                raise UserError(f"{folder / entry}: not readable JSON ({exc})") from None
    if not parts:
        raise UserError(f"no shard tables (cohort.part-<i>-of-<n>.json) in {', '.join(map(str, folders))}")
    if len(counts) > 1:
        raise UserError(f"the parts come from runs cut in different numbers of parts: {sorted(counts)}")
    return parts


def merge_parts(folders, out=None, partial: bool = False) -> dict:
    """Join the shards' tables of ``folders`` into ``out`` (default: the first folder).

    Every part 0..n-1 must be there once and all must share model version and settings, else a
    ``UserError`` naming what is wrong (``partial``: merge the parts there are, and say which
    are missing in ``cohort.json``). Label paths are made relative to ``out``. Returns the
    merged ``cohort.json`` content.
    """
    folders = [Path(f) for f in folders]
    out = Path(out) if out else folders[0]
    parts = find_parts(folders)
    of = next(iter(parts.values()))[1]["part"]["of"]
    missing = [i for i in range(of) if i not in parts]
    if missing and not partial:
        raise UserError(f"parts {missing} of {of} are missing (run them, or merge with --partial)")
    first = parts[min(parts)][1]
    for key in ("model_version", "settings"):
        differ = sorted(i for i, (_, c) in parts.items() if c.get(key) != first.get(key))
        if differ:
            raise UserError(f"parts {differ} differ from part {min(parts)} in {key.replace('_', ' ')}: "
                            "rerun them with the same weights and options")
    rows, errors, studies, counts = [], [], [], {}
    for i in sorted(parts):
        folder, cohort = parts[i]
        names = table_names(i, of)
        rows += _read_csv(folder / names["measurements"])
        errors += _read_csv(folder / names["errors"])
        for study in cohort.get("studies", []):
            if study.get("label"):
                study = {**study, "label": os.path.relpath(folder / study["label"], out)}
            studies.append(study)
        for key, value in cohort.get("counts", {}).items():
            counts[key] = counts.get(key, 0) + value
    rows.sort(key=lambda r: (r["study"], int(r["value"])))
    errors.sort(key=lambda r: r["study"])
    studies.sort(key=lambda s: s["id"])
    merged = {key: value for key, value in first.items() if key not in ("part", "counts", "studies", "errors")}
    merged.update({"merged_parts": sorted(parts), "missing_parts": missing, "part": {"id": 0, "of": 1},
                   "counts": counts, "studies": studies, "errors": errors})
    names = table_names()
    write_bytes_atomic(out / names["measurements"], csv_text(COLUMNS, rows).encode())
    write_bytes_atomic(out / names["errors"], csv_text(ERROR_COLUMNS, errors).encode())
    write_json_atomic(out / names["cohort"], merged)
    return merged
