"""What every model config shares: the networks it needs, their weights from the model store.

Which file of a network is live (published by training, else shipped) is the store's rule
(``lib.models.store``); a config hands its tasks the candidates of its networks.
"""

from __future__ import annotations

from monailabel.interfaces.config import TaskConfig

from lib.models.store import ModelStore


class MuscleTaskConfig(TaskConfig):
    """Base of the per-model configs; ``networks`` names the weight files the model needs."""

    networks: tuple[str, ...] = ()

    def init(self, name: str, model_dir: str, conf: dict, planner, **kwargs):
        super().init(name, model_dir, conf, planner, **kwargs)
        self.store = ModelStore(model_dir)
        self.paths = self.store.paths(self.networks)
        self.path = [p for paths in self.paths.values() for p in paths]

    trains: tuple[str, ...] | None = None  # networks its train task fine-tunes (None: what labels need)

    def trainer(self):
        from lib.tasks.train_incremental import IncrementalTrainTask

        networks = self.networks if self.trains is None else self.trains
        return IncrementalTrainTask(self.name, networks or None, self.store,
                                    description=f"Fine-tune {', '.join(networks) if networks else 'the networks the labels need'}"
                                                " on corrected slices; publish only if not worse")
