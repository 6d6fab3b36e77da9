"""MONAI Label train tasks: incremental rounds on the datastore's corrected labels.

``POST /train/<name>`` runs a round in MONAI Label's background process (so inference keeps
serving the live model); ``GET /train/`` shows its last console lines, ``/info``'s
``train_stats`` its progress (epoch, loss, validation score) and outcome, ``DELETE /train/``
stops it, leaving the live model as it was. A second request while one runs gets MONAI
Label's 429 answer, or waits in its queue with ``enqueue=true``.

A round whose stats still say ``RUNNING`` while no process holds the model folder's train
lock was killed (server stopped, ``DELETE /train/``, power cut): at start-up and whenever its
stats are read, it is marked ``INTERRUPTED``, so ``/info`` tells the truth; the networks it
had published stay live, the others kept their live model.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace

import requests
from filelock import FileLock, Timeout
from monailabel.interfaces.tasks.train import TrainTask

from lib.errors import UserError
from lib.files import write_json_atomic
from lib.labels import REGIONS
from lib.models.catalog import CLASSIFIER, segmenter_name
from lib.models.registry import ModelRegistry
from lib.models.store import ModelStore
from lib.tasks.background import in_background_process
from lib.training.corrections import corrected_images
from lib.training.distributed import run_parallel, world_size
from lib.training.incremental import RoundSettings, run_round
from lib.training.slices import SliceSet
from lib.training.splits import SplitBook

logger = logging.getLogger(__name__)


def _refresh_slice_scores() -> None:
    """Ask the server to re-score slices for active learning now that a model changed (best effort)."""
    if not in_background_process():
        return
    from monailabel.config import settings

    try:
        requests.post(f"http://127.0.0.1:{settings.MONAI_LABEL_SERVER_PORT}/scoring/slice_uncertainty", timeout=10)
    except requests.RequestException as e:
        logger.info(f"slice scores not refreshed: {e}")


def _parallel_round(rank: int, network: str, registry: ModelRegistry, train, val, settings: RoundSettings):
    """One DDP process of a round (module level: it is pickled to the workers)."""
    if settings.device.startswith("cuda"):
        settings = replace(settings, device=f"cuda:{rank}")
    return run_round(network, registry, train, val, settings, rank=rank)


class IncrementalTrainTask(TrainTask):
    """Fine-tune the live ``networks`` on corrected slices; ``networks=None`` trains what the
    labels need (``muscle``: the classifier, and each segmenter that has slices of its region).

    Args:
        name: the trainer's name (``/train/<name>``).
        networks: network file stems it trains, or None for "what the labels need".
        store: the weights it fine-tunes and publishes (its model folder keeps splits and stats too).
        description: shown in ``/info``.
    """

    def __init__(self, name: str, networks, store: ModelStore, description: str):
        super().__init__(description)
        self.name = name
        self.networks = tuple(networks) if networks else None
        self.store = store
        self.model_dir = store.model_dir
        self.stats_path = self.model_dir / "stats" / f"{name}.json"
        self.lock_path = self.model_dir / ".train.lock"  # one round at a time per model folder

    def config(self):
        return {**{k: v for k, v in asdict(RoundSettings()).items()}, "multi_gpu": False, "gpus": "all",
                "cpu_processes": 2}

    def _read_stats(self) -> dict:
        try:
            return json.loads(self.stats_path.read_text())
        except (OSError, ValueError):
            return {}

    def stats(self):
        stats = self._read_stats()
        if stats.get("status") == "RUNNING" and self.mark_interrupted():
            stats = self._read_stats()
        return stats

    def mark_interrupted(self) -> bool:
        """Mark a round that says RUNNING but holds no train lock (it was killed) as INTERRUPTED.

        True when it marked one. The lock is held while marking: a round starting meanwhile
        writes its own stats after it.
        """
        if self._read_stats().get("status") != "RUNNING":
            return False
        lock = FileLock(str(self.lock_path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            return False  # a round runs now
        try:
            stats = self._read_stats()
            if stats.get("status") != "RUNNING":
                return False  # it ended between the two reads
            done = sorted(stats.get("results") or {})
            stats.update(status="INTERRUPTED", end_ts=time.time(), reason=(
                "the round stopped before its end (server stopped or round killed); "
                + (f"finished networks: {', '.join(done)}; the others kept their live model" if done
                   else "no network was published: each kept its live model")))
            self._write_stats(stats)
            logger.info(f"{self.name}: a round killed at epoch {stats.get('epoch')} marked INTERRUPTED")
            return True
        finally:
            lock.release()

    def _write_stats(self, stats: dict) -> None:
        write_json_atomic(self.stats_path, stats)

    def __call__(self, request, datastore):
        try:
            return self._train(request, datastore)
        except UserError as e:
            print(f"training refused: {e}", flush=True)
            if in_background_process():
                sys.exit(2)  # the task ends as ERROR with this one line, no traceback
            raise

    def _train(self, request, datastore):
        settings = RoundSettings.from_request(request)
        multi_gpu = str(request.get("multi_gpu", False)).lower() in ("true", "1", "yes")
        size = world_size(multi_gpu, request.get("gpus", "all"), int(request.get("cpu_processes", 2)))
        self.model_dir.mkdir(parents=True, exist_ok=True)
        try:
            lock = FileLock(str(self.lock_path), timeout=0)
            lock.acquire()
        except Timeout:
            raise UserError("another training round is running on this model folder; try again when it ends") from None
        try:
            return self._round(settings, size, datastore)
        finally:
            lock.release()

    def _round(self, settings: RoundSettings, size: int, datastore) -> dict:
        start = time.time()
        images, skipped = corrected_images(datastore)
        split = SplitBook(self.model_dir / "splits.json", settings.val_fraction).assign([i.image_id for i in images])
        train, val = SliceSet.empty(), SliceSet.empty()
        for image in images:
            if split[image.image_id] == "train":
                train = train + image.slices
            else:
                val = val + image.slices
        regions = set(r for r in train.regions() if r)
        networks = self.networks or ((CLASSIFIER,) if regions else ()) + tuple(
            segmenter_name(r) for r in REGIONS if r in regions)
        stats = {"name": self.name, "status": "RUNNING", "start_ts": start, "epoch": 0,
                 "total_epochs": settings.epochs * max(1, len(networks)), "world_size": size,
                 "images": [{**i.summary(), "split": split[i.image_id]} for i in images], "skipped": skipped,
                 "results": {}}
        print(f"{self.name}: {len(train)} training and {len(val)} validation slices from {len(images)} "
              f"corrected images; networks {list(networks) or 'none'}", flush=True)
        self._write_stats(stats)
        for n, network in enumerate(networks):
            def on_epoch(epoch, s, n=n, network=network):
                stats.update(network=network, epoch=n * settings.epochs + s["epoch"], loss=round(s["loss"], 4),
                             val=round(s["val"], 4), best_metric=round(s["best"], 4))
                self._write_stats(stats)
                print(f"{network} epoch {s['epoch']}/{s['epochs']} loss {s['loss']:.4f} "
                      f"validation {s['val']:.4f} ({s['seconds']:.0f} s)", flush=True)

            registry = self.store.registry(network, settings.keep_versions)
            print(f"{network}: fine-tuning from {registry.current()} for {settings.epochs} x "
                  f"{settings.steps_per_epoch} steps on {size} process(es)", flush=True)
            if size > 1:
                with tempfile.TemporaryDirectory() as tmp:
                    result = run_parallel(_parallel_round, size, network, registry, train, val, settings,
                                          result_path=os.path.join(tmp, "result.pt"))
            else:
                result = run_round(network, registry, train, val, settings, on_epoch=on_epoch)
            stats["results"][network] = result
            print(f"{network}: {result['status']} " + (result.get("reason") or
                  f"(live {result.get('live_score')} -> candidate {result.get('candidate_score')})"), flush=True)
            self._write_stats(stats)
        if any(r.get("status") == "published" for r in stats["results"].values()):
            _refresh_slice_scores()
        scores = [r["candidate_score"] for r in stats["results"].values() if "candidate_score" in r]
        stats.update(status="DONE", total_time=round(time.time() - start, 1),
                     best_metric=min(scores) if scores else None)
        self._write_stats(stats)
        return stats
