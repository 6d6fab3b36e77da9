"""``POST /batch/infer/<model>``: every (or the chosen) datastore image through one infer task.

MONAI Label 0.8.5's ``BatchInferTask`` fails on a machine without GPUs: it spreads the images
over ``device_ids = ["cuda:0", ...]`` with ``idx % len(device_ids)``, and ``multi_gpu`` (its
route's default) makes that list empty, so every request was HTTP 500 (ZeroDivisionError). This
task keeps its request and its answer and changes what goes wrong:

- devices: the GPUs named by ``gpus`` (``"all"`` or ``"0,1"``) with ``multi_gpu``, else the one
  ``device``; without a GPU the CPU. Images go round-robin over the devices, one worker thread
  per device by default (``max_workers`` overrides it);
- each image's label is saved in the datastore with ``label_tag`` (``original`` by default, as
  MONAI Label intends: the model's answer, never taken for a clinician's ``final``);
- progress: one log line per image (``batch infer muscle: 3/10 images, ...``, with an ETA). A
  background run's lines are the task's ``details`` in ``GET /batch/infer``;
- an image that fails is logged and answered ``{"error": message}``; the others still run. The
  run fails (task status ``ERROR``, or a 4xx for ``run_sync``) only when no image succeeded;
- ``check_batch_request`` refuses bad parameters before anything starts (the app calls it from
  the route: 404 for an unknown model or image, 422 for a wrong value).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Callable

import torch
from monailabel.interfaces.datastore import DefaultLabelTag
from monailabel.interfaces.tasks.batch_infer import BatchInferImageType, BatchInferTask, run_infer_task

from lib.errors import NotFoundError, UserError
from lib.identifiers import check_identifier
from lib.inference.batching import resolve_device
from lib.labels import REGIONS
from lib.options import parse_bool, parse_slices

logger = logging.getLogger(__name__)

IMAGE_SETS = tuple(t.value for t in BatchInferImageType)  # all, labeled, unlabeled
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _count(request: dict, key: str) -> int:
    """A non-negative integer option (``max_workers``, ``max_batch_size``); 0 = not set."""
    value = request.get(key, 0)
    if value is None or value == "":
        return 0
    if isinstance(value, bool) or not str(value).strip().isdigit():
        raise UserError(f"option {key!r} must be a non-negative integer, got {value!r}")
    return int(str(value).strip())


def _gpu_ids(value) -> list[int] | None:
    """``gpus``: None for "all" (or unset), else the listed indices (each must exist)."""
    if value in (None, "", "all"):
        return None
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    try:
        ids = [int(str(g).strip()) for g in items]
    except ValueError:
        raise UserError(f"option 'gpus' must be 'all' or GPU indices like '0,1', got {value!r}") from None
    count = gpu_count()
    bad = [g for g in ids if not 0 <= g < count]
    if bad:
        raise UserError(f"option 'gpus': GPU(s) {bad} do not exist (this server has {count} GPU(s))")
    return ids


def batch_devices(request: dict) -> list[str]:
    """The devices the images are spread over (module doc); never empty."""
    device = resolve_device(request.get("device") or "cuda")  # "cuda" without a GPU: the CPU
    if device == "cpu":
        return ["cpu"]
    if parse_bool(request.get("multi_gpu", True), "multi_gpu"):
        ids = _gpu_ids(request.get("gpus"))
        return [f"cuda:{i}" for i in (range(gpu_count()) if ids is None else ids)]
    return [device]


def log_level(request: dict) -> str:
    """``logging``: how much MONAI Label's per-image steps log during the batch (default WARNING)."""
    level = str(request.get("logging") or "WARNING").strip().upper()
    if level not in LOG_LEVELS:
        raise UserError(f"option 'logging' must be one of {', '.join(LOG_LEVELS)}, got {request.get('logging')!r}")
    return level


@contextlib.contextmanager
def quiet_monailabel(level: str):
    """MONAI Label logs every transform of every image at INFO: enough lines to push the progress
    out of a background task's ``details`` (its last 20 lines). Its loggers log at ``level`` while
    the batch runs; this module's progress lines stay at INFO."""
    parent = logging.getLogger("monailabel")
    before = parent.level
    parent.setLevel(level)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        parent.setLevel(before)


def check_infer_options(request: dict) -> None:
    """The infer options every image will get, checked once (the infer task parses them again)."""
    region = str(request.get("region", "auto")).lower()
    if region not in ("auto", *REGIONS):
        raise UserError(f"option 'region' must be one of auto, {', '.join(REGIONS)}; got {request.get('region')!r}")
    parse_slices(request.get("slices"))
    for key in ("split_sides", "cleanup", "keep_largest", "clear_bone", "skip_faded_ends", "multi_gpu"):
        if key in request:
            parse_bool(request[key], key)
    try:
        int(request.get("echo", 0))
    except (TypeError, ValueError):
        raise UserError(f"option 'echo' must be an integer, got {request.get('echo')!r}") from None


def check_batch_request(request: dict, infers: dict, datastore) -> None:
    """Refuse a batch request that cannot run (module doc); returns None when it can.

    request: MONAI Label's batch request (``model``, ``images`` and the ``params`` merged in);
    infers: the app's infer tasks by model name; datastore: the app's datastore.
    """
    model = request.get("model")
    if model not in infers:
        raise NotFoundError(f"unknown model {model!r} (available: {', '.join(sorted(infers)) or 'none'})")
    images = request.get("images", BatchInferImageType.IMAGES_ALL)
    images = getattr(images, "value", images)
    if isinstance(images, str):
        if images not in IMAGE_SETS:
            raise UserError(f"option 'images' must be one of {', '.join(IMAGE_SETS)} or a list of image ids, "
                            f"got {images!r}")
    elif isinstance(images, (list, tuple)) and images:
        problems = [p for p in (check_identifier("image", i) for i in images) if p]
        if problems:
            raise UserError(problems[0])
        known = set(datastore.list_images())
        unknown = [i for i in images if i not in known]
        if unknown:
            raise NotFoundError(f"unknown image(s) {unknown[:5]} (not in the datastore)")
    else:
        raise UserError(f"option 'images' must be one of {', '.join(IMAGE_SETS)} or a non-empty list of image ids")
    tag = getattr(request.get("label_tag"), "value", request.get("label_tag"))
    if tag is not None:
        problem = check_identifier("label_tag", tag) if tag else "label_tag must not be empty"
        if problem:
            raise UserError(problem)
    _count(request, "max_workers")
    _count(request, "max_batch_size")
    log_level(request)
    _gpu_ids(request.get("gpus"))  # named GPUs must exist, even where the request ends up on the CPU
    batch_devices(request)
    check_infer_options(request)


class MuscleBatchInferTask(BatchInferTask):
    """MONAI Label's batch infer, on CPU or any number of GPUs (module doc)."""

    def __call__(self, request, datastore, infer: Callable):
        model = request.get("model")
        image_ids = sorted(self.get_images(request, datastore))
        limit = _count(request, "max_batch_size")
        if limit:
            image_ids = image_ids[:limit]
        devices = batch_devices(request)
        tag = getattr(request.get("label_tag"), "value", request.get("label_tag")) or DefaultLabelTag.ORIGINAL.value
        level = log_level(request)
        workers = max(1, min(_count(request, "max_workers") or len(devices), len(image_ids)))
        tasks = []
        for idx, image_id in enumerate(image_ids):
            req = copy.deepcopy(request)
            req.update({"_id": idx, "_image_id": image_id, "image": image_id, "save_label": True, "label_tag": tag,
                        "device": devices[idx % len(devices)], "logging": level})
            tasks.append(req)
        logger.info(f"batch infer {model}: {len(tasks)} images on {', '.join(devices)} ({workers} worker(s)), "
                    f"labels saved as {tag!r}")
        with quiet_monailabel(level):
            result = self._run(model, tasks, workers, datastore, infer)
        failed = [i for i, r in result.items() if "error" in r]
        if failed and len(failed) == len(result):
            raise UserError(f"batch infer {model}: all {len(result)} images failed (first: {result[failed[0]]['error']})")
        return result

    @staticmethod
    def _run(model: str, tasks: list[dict], workers: int, datastore, infer: Callable) -> dict:
        """Each task's answer (``{"error": message}`` where it failed) by image id, in id order."""
        result: dict = {}
        start, total = time.time(), len(tasks)

        def finished(req, answer=None, error: Exception | None = None) -> None:
            image_id = req["_image_id"]
            if error is not None:
                message = (str(getattr(error, "msg", None) or error).strip().splitlines() or [type(error).__name__])[0]
                answer = {"error": message}
                logger.warning(f"batch infer {model}: image {image_id} failed: {message}")
            result[image_id] = answer
            done, elapsed = len(result), time.time() - start
            failed = sum("error" in r for r in result.values())
            logger.info(f"batch infer {model}: {done}/{total} images ({failed} failed), {image_id} on "
                        f"{req['device']}, {elapsed:.0f} s elapsed, ETA {elapsed / done * (total - done):.0f} s")

        if workers <= 1:
            for req in tasks:
                try:
                    finished(req, run_infer_task(req, datastore, infer))
                except Exception as exc:  # one bad image does not stop the others
                    finished(req, error=exc)
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="batch-infer") as pool:
                futures = {pool.submit(run_infer_task, req, datastore, infer): req for req in tasks}
                for future in as_completed(futures):
                    try:
                        finished(futures[future], future.result())
                    except Exception as exc:
                        finished(futures[future], error=exc)
        labelled = sum("error" not in r for r in result.values())
        logger.info(f"batch infer {model}: done, {labelled}/{total} images labelled in {time.time() - start:.1f} s")
        return {req["_image_id"]: result[req["_image_id"]] for req in tasks}
