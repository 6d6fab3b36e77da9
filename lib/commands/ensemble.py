"""``python main.py ensemble``: join segmenters of one region into one softmax-averaged network.

    python main.py ensemble --members weights,/tmp/u0,/tmp/u2 --out /tmp/ensemble
    python main.py ensemble --members weights,/tmp/u0,/tmp/u2 --out weights   # ship it
    python main.py ensemble --unpack weights --out /tmp/members   # member_1/, member_2/ ...

Each member folder holds ``<network>.pt`` (``python main.py pretrain --out DIR``). The output
folder gets ``<network>.pt``, an ensemble checkpoint (``lib.networks.ensemble``) that the server
serves, fine-tunes and versions as one network, and ``<network>.json``, the members' own
records of how they were made. Members are read before anything is written, so ``--out`` may be
one of them. ``--unpack`` does the reverse: one folder per member, each a network that
``pretrain --init-from`` can continue (it refuses an ensemble).
"""

from __future__ import annotations

import json
from pathlib import Path

from lib.models.catalog import SEGMENTERS, record_file, weight_file


def add_arguments(parser) -> None:
    parser.add_argument("--members", help="comma-separated folders, each holding the network's .pt (two or more)")
    parser.add_argument("--unpack", help="a folder whose network is an ensemble: write each member to OUT/member_N")
    parser.add_argument("--network", choices=SEGMENTERS, default="segmentation_leg",
                        help="the segmenter to join (default segmentation_leg)")
    parser.add_argument("--out", required=True, help="folder to write <network>.pt and .json to")


def run(args) -> int:
    from lib.errors import UserError
    from lib.files import write_json_atomic
    from lib.networks.checkpoint import save_ensemble

    if bool(args.members) == bool(args.unpack):
        raise UserError("give --members FOLDERS (to join) or --unpack FOLDER (to split), one of them")
    if args.unpack:
        return unpack(Path(args.unpack), Path(args.out), args.network)
    folders = [Path(f.strip()) for f in args.members.split(",") if f.strip()]
    if len(folders) < 2:
        raise UserError(f"--members: an ensemble needs two or more folders, got {len(folders)}")
    paths = [weight_file(f, args.network) for f in folders]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"--members: no {args.network} weights at {', '.join(missing)}")
    records = []
    for folder in folders:
        record = record_file(folder, args.network)
        records.append(json.loads(record.read_text()) if record.is_file() else {"record": "none beside the weights"})
    command = f"python main.py ensemble --members {args.members} --out {args.out} --network {args.network}"
    out = Path(args.out)
    # Members' tensors are all in memory before the first write, so --out may be a member's folder.
    checkpoint = save_ensemble(weight_file(out, args.network), paths, {"command": command})
    write_json_atomic(record_file(out, args.network), {
        "name": args.network, "network": "ensemble", "command": command,
        "members": [{"folder": str(f), **r} for f, r in zip(folders, records)]})
    print(f"{checkpoint}: {args.network}, softmax ensemble of {len(paths)} members")
    return 0


def unpack(folder: Path, out: Path, network: str) -> int:
    """Write each member of ``folder``'s ensemble to ``out/member_N/`` with its own record."""
    from lib.errors import UserError
    from lib.files import write_json_atomic
    from lib.networks.checkpoint import save_ensemble_members

    path = weight_file(folder, network)
    if not path.is_file():
        raise UserError(f"--unpack: no {network} weights at {path}")
    written = save_ensemble_members(path, lambda index: weight_file(out / f"member_{index + 1}", network))
    record = record_file(folder, network)
    records = json.loads(record.read_text()).get("members", []) if record.is_file() else []
    for index, member in enumerate(written):
        own = records[index] if index < len(records) else {"name": network}
        write_json_atomic(record_file(member.parent, network), own)
        print(f"{member}: member {index + 1} of {path}")
    return 0
