#!/usr/bin/env python
"""Command line of the muscle segmentation server.

    python main.py                    # = serve: start MONAI Label on the embedded default
    python main.py <command> --help   # serve, generate, networks, pretrain, infer, bench ...

Each command lives in ``lib/commands/<command>.py`` (``bench``: ``bench/command.py``, beside the
benchmarks it runs) with ``add_arguments(parser)`` and ``run(args) -> int``. User mistakes end
in a one-line error and exit code 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

# The server, inference and training share 2 cores with each other (and with the tests): idle
# OpenMP threads must sleep, not spin, or a busy core slows torch down several times.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from lib.errors import UserError  # noqa: E402

COMMANDS = {
    "serve": "start the MONAI Label server (default command)",
    "generate": "generate synthetic thigh/leg phantom studies",
    "networks": "print parameters, GFLOP and receptive fields of the networks",
    "pretrain": "train the default weights on phantoms and the real slice",
    "infer": "segment a NIfTI file or DICOM folder without a server; or a folder, list or PACS query of many",
    "merge-cohort": "join the tables of an `infer` run cut into parts (--part-id/--num-parts)",
    "models": "list published model versions, or roll one back",
    "ensemble": "join segmenters of one region into one softmax-averaged network",
    "evaluate": "Dice, surface distances and classifier accuracy on a labelled datastore",
    "bench": "run the speed benchmarks",
    "upload": "send NIfTI studies (as MR DICOM) or DICOM folders to a DICOMweb PACS",
}
MODULES = {"bench": "bench.command",  # the product in lib/ does not depend on its benchmarks
           "merge-cohort": "lib.commands.merge_cohort"}


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (torch and MONAI load slowly)."""
    parser = argparse.ArgumentParser(prog="main.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(MODULES.get(name, f"lib.commands.{name}"))
            module.add_arguments(command_parser)
            command_parser.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["serve", *argv]
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except (UserError, FileNotFoundError) as e:
        print(f"main.py {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
