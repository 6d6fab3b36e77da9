"""``python main.py models``: the published versions of each network, and rollback.

    python main.py models                                  # versions, scores, which is live
    python main.py models --rollback segmentation_thigh    # the version before the live one
    python main.py models --rollback classifier --version 3

A running server picks the change up at its next inference (the live file's time changes).
"""

from __future__ import annotations

import time

from lib.models.catalog import NETWORKS
from lib.paths import APP_MODEL_DIR


def add_arguments(parser):
    parser.add_argument("--model-dir", default=str(APP_MODEL_DIR),
                        help=f"the server's live model folder (default {APP_MODEL_DIR}; `--conf model_dir` of serve)")
    parser.add_argument("--rollback", choices=NETWORKS, metavar="NETWORK",
                        help=f"make an earlier version live again: one of {', '.join(NETWORKS)}")
    parser.add_argument("--version", type=int, help="the version to roll back to (default: the one before the live one)")


def run(args) -> int:
    from lib.errors import UserError
    from lib.models.store import ModelStore

    if args.version is not None and not args.rollback:
        raise UserError("--version needs --rollback NETWORK")
    store = ModelStore(args.model_dir)
    registries = {n: store.registry(n) for n in NETWORKS}
    if args.rollback:
        event = registries[args.rollback].rollback(args.version)
        target = "the shipped weights" if event.get("to") == "shipped" else f"version {event['version']}"
        print(f"{args.rollback}: {target} is live")
        return 0
    for name, registry in registries.items():
        versions = registry.versions()
        live = "shipped weights" if not registry.live.is_file() else next(
            (f"v{v['version']}" for v in versions if v["live"]), "unversioned file")
        print(f"{name}: live = {live}")
        for v in versions:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(v.get("time", 0)))
            print(f"  v{v['version']:<4} {when}  {v.get('metric', 'score')} {v.get('live_score')} -> "
                  f"{v.get('candidate_score')}{'  (live)' if v['live'] else ''}")
    return 0
