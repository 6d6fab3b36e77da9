"""``python main.py ensemble``: join segmenters of one region into one softmax-averaged network,
or interpolate the weights of a network and its continuation.

    python main.py ensemble --members weights,/tmp/u0,/tmp/u2 --out /tmp/ensemble
    python main.py ensemble --members weights,/tmp/u0,/tmp/u2 --out weights   # ship it
    python main.py ensemble --unpack weights --out /tmp/members   # member_1/, member_2/ ...
    python main.py ensemble --network segmentation_thigh --members weights,/tmp/ft --interpolate 0.5 --out /tmp/mid

Each member folder holds ``<network>.pt`` (``python main.py pretrain --out DIR``). The output
folder gets ``<network>.pt``, an ensemble checkpoint (``lib.networks.ensemble``) that the server
serves, fine-tunes and versions as one network, and ``<network>.json``, the members' own
records of how they were made. Members are read before anything is written, so ``--out`` may be
one of them. ``--unpack`` does the reverse: one folder per member, each a network that
``pretrain --init-from`` can continue (it refuses an ensemble). ``--interpolate SHARE`` joins two
members into one network instead, ``(1 - SHARE) * first + SHARE * second`` weight by weight
(``lib.networks.checkpoint.save_interpolation``): as fast to serve as either, and meant for a
network and its own continuation (``pretrain --init-from``), whose weights stay close.
"""

from __future__ import annotations

from pathlib import Path

from lib.models.catalog import SEGMENTERS, weight_file


def add_arguments(parser) -> None:
    parser.add_argument("--members", help="comma-separated folders, each holding the network's .pt (two or more)")
    parser.add_argument("--unpack", help="a folder whose network is an ensemble: write each member to OUT/member_N")
    parser.add_argument("--interpolate", type=float, metavar="SHARE",
                        help="average the two members' weights instead: (1 - SHARE) * first + SHARE * second")
    parser.add_argument("--network", choices=SEGMENTERS, default="segmentation_leg",
                        help="the segmenter to join (default segmentation_leg)")
    parser.add_argument("--out", required=True, help="folder to write <network>.pt and .json to")


def run(args) -> int:
    from lib.errors import UserError
    from lib.models.ensembles import join_folders, unpack_folder

    if args.interpolate is not None and args.unpack:
        raise UserError("--interpolate joins two --members; it does not go with --unpack")
    if bool(args.members) == bool(args.unpack):
        raise UserError("give --members FOLDERS (to join) or --unpack FOLDER (to split), one of them")
    if args.unpack:
        try:
            written = unpack_folder(Path(args.unpack), Path(args.out), args.network)
        except UserError as error:
            raise UserError(f"--unpack: {error}") from None
        for index, member in enumerate(written, start=1):
            print(f"{member}: member {index} of {weight_file(args.unpack, args.network)}")
        return 0
    folders = [Path(f.strip()) for f in args.members.split(",") if f.strip()]
    command = f"python main.py ensemble --members {args.members} --out {args.out} --network {args.network}"
    if args.interpolate is not None:
        from lib.models.ensembles import interpolate_folders

        if len(folders) != 2:
            raise UserError(f"--interpolate needs exactly two --members, got {len(folders)}")
        if not 0.0 <= args.interpolate <= 1.0:
            raise UserError(f"--interpolate must be in [0, 1], got {args.interpolate}")
        try:
            interpolate_folders(folders[0], folders[1], Path(args.out), args.network, args.interpolate,
                                f"{command} --interpolate {args.interpolate}")
        except UserError as error:
            raise UserError(f"--members: {error}") from None
        print(f"{weight_file(args.out, args.network)}: {args.network}, {1 - args.interpolate:g} x {folders[0]}"
              f" + {args.interpolate:g} x {folders[1]}")
        return 0
    try:
        join_folders(folders, Path(args.out), args.network, command)
    except UserError as error:
        raise UserError(f"--members: {error}") from None
    print(f"{weight_file(args.out, args.network)}: {args.network}, softmax ensemble of {len(folders)} members")
    return 0
