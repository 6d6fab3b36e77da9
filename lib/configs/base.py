"""What every model config shares: where the weights of its networks live, which file is live.

Two places per network, as MONAI Label's radiology app does with its pretrained/published
pair: ``weights/<network>.pt`` ships in the repository (made by ``python main.py pretrain``),
and ``apps/muscle/model/<network>.pt`` is the live model published by training at run time
(git-ignored). The live file wins when it exists; no weight is ever downloaded.
"""

from __future__ import annotations

import os

from monailabel.interfaces.config import TaskConfig

from lib.paths import SHIPPED_WEIGHTS


class MuscleTaskConfig(TaskConfig):
    """Base of the per-model configs; ``networks`` names the weight files the model needs."""

    networks: tuple[str, ...] = ()

    def init(self, name: str, model_dir: str, conf: dict, planner, **kwargs):
        super().init(name, model_dir, conf, planner, **kwargs)
        self.paths = {network: [str(SHIPPED_WEIGHTS / f"{network}.pt"), os.path.join(model_dir, f"{network}.pt")]
                      for network in self.networks}
        self.path = [p for paths in self.paths.values() for p in paths]

    trains: tuple[str, ...] | None = None  # networks its train task fine-tunes (None: what labels need)

    def trainer(self):
        from lib.tasks.train_incremental import IncrementalTrainTask

        networks = self.networks if self.trains is None else self.trains
        return IncrementalTrainTask(self.name, networks or None, self.model_dir, SHIPPED_WEIGHTS,
                                    description=f"Fine-tune {', '.join(networks) if networks else 'the networks the labels need'}"
                                                " on corrected slices; publish only if not worse")
