"""Weight folders joined into one ensemble network, split back, or interpolated into one network:
the files and their records.

An ensemble (``lib.networks.ensemble``) is served, fine-tuned and versioned as one network, so
it lives in a folder as any network does: ``<network>.pt`` and a ``<network>.json`` record, which
here keeps each member's own record of how it was made. ``python main.py ensemble`` joins and
splits folders by hand; ``python main.py pretrain`` joins the members it trains.
"""

from __future__ import annotations

import json
from pathlib import Path

from lib.errors import UserError
from lib.files import write_json_atomic
from lib.models.catalog import record_file, weight_file


def member_records(folders: list[Path], network: str) -> list[dict]:
    """Each folder's record of ``network`` (a placeholder where none lies beside the weights)."""
    records = []
    for folder in folders:
        record = record_file(folder, network)
        records.append(json.loads(record.read_text()) if record.is_file() else {"record": "none beside the weights"})
    return records


def join_folders(folders: list[Path], out: Path, network: str, command: str, **record_extra) -> dict:
    """Join ``network`` of each of ``folders`` (two or more) into ``out/<network>.pt``, an
    ensemble, and write its record (``command``, the members' records, ``record_extra``); returns
    the record. Every member is read before anything is written, so ``out`` may be a member's folder."""
    from lib.networks.checkpoint import save_ensemble

    if len(folders) < 2:
        raise UserError(f"an ensemble needs two or more folders, got {len(folders)}")
    paths = [weight_file(f, network) for f in folders]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"no {network} weights at {', '.join(missing)}")
    records = member_records(folders, network)
    save_ensemble(weight_file(out, network), paths, {"command": command})
    record = {"name": network, "network": "ensemble", "command": command, **record_extra,
              "members": [{"folder": str(f), **r} for f, r in zip(folders, records)]}
    write_json_atomic(record_file(out, network), record)
    return record


def unpack_folder(folder: Path, out: Path, network: str) -> list[Path]:
    """Write each member of ``folder``'s ensemble to ``out/member_N/`` with its own record;
    returns the weight files written."""
    from lib.networks.checkpoint import save_ensemble_members

    path = weight_file(folder, network)
    if not path.is_file():
        raise UserError(f"no {network} weights at {path}")
    written = save_ensemble_members(path, lambda index: weight_file(out / f"member_{index + 1}", network))
    record = record_file(folder, network)
    records = json.loads(record.read_text()).get("members", []) if record.is_file() else []
    for index, member in enumerate(written):
        own = records[index] if index < len(records) else {"name": network}
        write_json_atomic(record_file(member.parent, network), own)
    return written


def interpolate_folders(first: Path, second: Path, out: Path, network: str, share: float, command: str) -> dict:
    """Write ``out/<network>.pt``, the weights ``share`` of the way from ``first``'s network to
    ``second``'s (``lib.networks.checkpoint.save_interpolation``), and its record (``command`` and
    both records); returns the record. Both are read before anything is written, so ``out`` may
    be either folder."""
    from lib.networks.checkpoint import save_interpolation

    paths = [weight_file(f, network) for f in (first, second)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"no {network} weights at {', '.join(missing)}")
    records = member_records([first, second], network)
    save_interpolation(weight_file(out, network), paths[0], paths[1], share, {"command": command})
    record = {"name": network, "network": "segmenter", "command": command, "interpolation_share": share,
              "first": {"folder": str(first), **records[0]}, "second": {"folder": str(second), **records[1]}}
    write_json_atomic(record_file(out, network), record)
    return record
