"""The data-parallel path on CPU: PyTorch DDP over gloo with 2 processes (no GPU needed)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lib.data.datastore.local import MuscleDatastore
from lib.data.io import save_nifti
from lib.data.phantoms.phantom import generate_phantom
from lib.models.store import ModelStore
from lib.paths import SHIPPED_WEIGHTS
from lib.tasks.train_incremental import IncrementalTrainTask
from lib.training.distributed import run_parallel, world_size
from lib.training.loop import TrainSettings, fit


def _rank_batches(rank: int):
    gen = torch.Generator().manual_seed(100 + rank)  # each process draws different data
    while True:
        x = torch.randn(4, 3, generator=gen)
        yield x, x.sum(1, keepdim=True)


def _fit_worker(rank: int, out_dir: str):
    torch.manual_seed(0)  # same starting weights everywhere, as when loading the live model
    model = nn.Linear(3, 1)
    start = model.weight.detach().clone()
    history = fit(model, _rank_batches(rank), nn.functional.mse_loss, lambda m: 0.0,
                  TrainSettings(epochs=2, steps_per_epoch=5, lr=0.05, amp=False), keep="last")
    torch.save({"start": start, "end": model.state_dict(), "epochs": len(history.train_loss)},
               f"{out_dir}/rank{rank}.pt")
    return history.summary()


def test_fit_under_ddp_keeps_the_processes_in_step(tmp_path):
    summary = run_parallel(_fit_worker, 2, str(tmp_path), result_path=str(tmp_path / "result.pt"))
    assert summary["epochs_run"] == 2
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for name in ("weight", "bias"):  # gradients were averaged: both processes hold the same weights
        assert torch.allclose(ranks[0]["end"][name], ranks[1]["end"][name], atol=1e-6)
    assert not torch.allclose(ranks[0]["start"], ranks[0]["end"]["weight"])  # and they did train


def test_world_size_follows_monai_label_multi_gpu_option():
    assert world_size(False, "all", 2) == 1
    if not torch.cuda.is_available():
        assert world_size(True, "all", 2) == 2  # gloo processes on CPU


def test_a_round_with_multi_gpu_runs_data_parallel_and_publishes_from_rank_0(tmp_path):
    studies = tmp_path / "studies"
    studies.mkdir()
    phantom = generate_phantom("leg", 20_011, n_slices=4, severity="mild", spacing=(1.037037, 1.037037, 5.0))
    save_nifti(studies / "leg.nii.gz", phantom.image, phantom.affine)
    save_nifti(tmp_path / "label.nii.gz", phantom.label.astype(np.uint8), phantom.affine)
    datastore = MuscleDatastore(str(studies), auto_reload=False)
    datastore.save_label("leg", str(tmp_path / "label.nii.gz"), "final", {})
    task = IncrementalTrainTask("segmentation_leg", ("segmentation_leg",), ModelStore(tmp_path / "model", SHIPPED_WEIGHTS),
                                "test")
    stats = task({"model": "segmentation_leg", "multi_gpu": True, "cpu_processes": 2, "epochs": 1,
                  "steps_per_epoch": 2, "replay_subjects": 1, "val_subjects": 1, "tolerance": 1.0}, datastore)
    result = stats["results"]["segmentation_leg"]
    assert stats["world_size"] == 2 and stats["status"] == "DONE"
    assert result["history"]["epochs_run"] == 1 and result["train_slices"] == 4
    assert result["status"] == "published" and result["version"] == 1  # rank 0 alone published
    assert sorted(p.name for p in (tmp_path / "model" / "versions" / "segmentation_leg").glob("v*.pt")) == ["v0001.pt"]
