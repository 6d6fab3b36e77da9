"""MONAI Label app: thigh and leg muscle segmentation on MRI (Agosti et al., MAGMA 2022).

A thin shell: every model is wired by its config in ``lib/configs`` and all logic lives in
``lib/``. Start it the MONAI Label way::

    monailabel start_server --app apps/muscle --studies studies

or with ``python main.py`` from the repository root (same server, loopback, port 8000).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # `lib` is the repository's, not MONAI Label's app/lib

from monailabel.config import settings  # noqa: E402
from monailabel.interfaces.app import MONAILabelApp  # noqa: E402
from monailabel.tasks.activelearning.first import First  # noqa: E402

from lib.configs import CONFIGS  # noqa: E402
from lib.data.datastore.local import MuscleDatastore  # noqa: E402
from lib.data.dicom.dicomweb_datastore import dicomweb_datastore  # noqa: E402
from lib.errors import UserError  # noqa: E402
from lib.networks import compiled  # noqa: E402
from lib.options import parse_bool  # noqa: E402
from lib.server.auth import install_auth_fix  # noqa: E402
from lib.server.batch_routes import install_batch_infer_check  # noqa: E402
from lib.server.errors import install_error_handlers  # noqa: E402
from lib.server.evaluation_routes import install_evaluation_routes  # noqa: E402
from lib.server.guard import install_request_guard  # noqa: E402
from lib.server.names import check_infer_image  # noqa: E402
from lib.server.threads import move_heavy_routes_off_the_loop  # noqa: E402
from lib.settings import apply_server_defaults  # noqa: E402
from lib.tasks.batch_infer import MuscleBatchInferTask, check_batch_request  # noqa: E402
from lib.tasks.background import in_background_process, queue_scoring, set_auto_scoring  # noqa: E402
from lib.tasks.strategy_slices import DEFAULT_STRATEGY, SCORING_METHOD, ForegroundRandomSlices, RandomSlices  # noqa: E402

logger = logging.getLogger(__name__)


class MuscleApp(MONAILabelApp):
    """Classifier -> thigh / leg segmenter tree, served to OHIF and 3D Slicer."""

    def __init__(self, app_dir, studies, conf):
        # live (published) weights, versions and train state; git-ignored. `--conf model_dir X` moves it
        self.model_dir = (conf or {}).get("model_dir") or os.path.join(app_dir, "model")
        self.configs = {}
        for name, config_class in CONFIGS.items():
            config = config_class()
            config.init(name, self.model_dir, conf, None)
            self.configs[name] = config
        apply_server_defaults()
        install_error_handlers()
        install_evaluation_routes()
        move_heavy_routes_off_the_loop()  # inference and next-sample must not stall other clients
        # bad ids, unknown names, malformed params JSON and oversized uploads: 4xx before any task
        self.max_upload_mb = install_request_guard(conf)
        # slice scores are computed in the background only: at start-up, after saves, after a publish
        set_auto_scoring(parse_bool((conf or {}).get("auto_score_slices", True), "auto_score_slices"))
        # fp32 CPU hosts: networks compiled in the background for the shapes they serve
        # (lib.networks.compiled); not in MONAI Label's short-lived train and scoring processes
        compiled.enable(parse_bool((conf or {}).get("compile_networks", True), "compile_networks")
                        and not in_background_process())
        install_auth_fix()  # MONAI Label's bearer-token check, usable with PyJWT 2
        install_batch_infer_check(self.check_batch_request)  # 4xx before a batch starts; off the event loop
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="Muscle segmentation (thigh and leg MRI)",
            description="Per-slice thigh/leg classifier routing to a 12-muscle thigh and a 6-muscle leg segmenter",
            version="0.1.0",
        )

    def info(self):
        """MONAI Label's ``/info``, plus which networks run compiled (``compiled_networks``)."""
        return {**super().info(), "compiled_networks": compiled.status()}

    def infer(self, request, datastore=None):
        """MONAI Label's infer, reading only datastore images, uploads and sessions (see names)."""
        sessions = getattr(self._sessions, "store_path", None)
        problem = check_infer_image(request.get("image"), tempfile.gettempdir(), sessions)
        if problem:
            raise UserError(problem)
        return super().infer(request, datastore)

    def init_batch_infer(self):
        return MuscleBatchInferTask()  # on CPU too: MONAI Label's divides by the number of GPUs

    def check_batch_request(self, model: str, request: dict) -> None:
        """Refuse a ``POST /batch/infer/<model>`` that cannot run (``lib.tasks.batch_infer``)."""
        check_batch_request({**request, "model": model}, self._infers, self.datastore())

    def init_datastore(self):
        if self.studies.startswith(("http://", "https://")) and settings.MONAI_LABEL_DATASTORE.lower() != "dsa":
            return dicomweb_datastore(self.studies)  # checked labels, muscle-named DICOM SEG
        datastore = MuscleDatastore(
            self.studies,
            extensions=settings.MONAI_LABEL_DATASTORE_FILE_EXT,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )
        add_image = datastore.add_image

        def add_image_and_queue_scoring(image_id, image_filename, image_info):
            image_id = add_image(image_id, image_filename, image_info)
            self.queue_slice_scoring(f"image {image_id} uploaded")  # PUT /datastore/image
            return image_id

        datastore.add_image = add_image_and_queue_scoring
        return datastore

    def on_init_complete(self):
        super().on_init_complete()
        for trainer in self._trainers.values():  # a round killed with the last server says RUNNING no more
            getattr(trainer, "mark_interrupted", lambda: False)()
        self.queue_slice_scoring("start-up")

    def on_save_label(self, image_id, label_id):
        super().on_save_label(image_id, label_id)
        self.queue_slice_scoring(f"label of {image_id} saved")

    def queue_slice_scoring(self, why: str) -> bool:
        """Queue the background slice scoring when an image lacks the live model's scores (never waits)."""
        method = self._scoring_methods.get(SCORING_METHOD)
        try:
            if method is None or not method.pending(self.datastore()):
                return False
            return queue_scoring(SCORING_METHOD, why)
        except Exception as e:  # best effort: a save or the start must not fail for it
            logger.warning(f"slice scoring not queued ({why}): {e}")
            return False

    def init_infers(self):
        infers = {}
        for config in self.configs.values():
            task = config.infer()
            if task is not None:
                infers.update(task if isinstance(task, dict) else {config.name: task})
        return infers

    def init_trainers(self):
        trainers = {}
        for config in self.configs.values():
            task = config.trainer()
            if task is not None:
                trainers[config.name] = task
        return trainers

    def init_strategies(self):
        # slice-level random and foreground-aware random (the baselines), MONAI Label's image-level first
        strategies = {"random": RandomSlices(), "foreground_random": ForegroundRandomSlices(), "first": First()}
        for config in self.configs.values():
            strategies.update(config.strategy() or {})
        # Slicer and OHIF preselect the first strategy /info lists: the best of `bench active_learning`
        return {DEFAULT_STRATEGY: strategies.pop(DEFAULT_STRATEGY), **strategies}

    def init_scoring_methods(self):
        methods = {}
        for config in self.configs.values():
            methods.update(config.scoring_method() or {})
        return methods
