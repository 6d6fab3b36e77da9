"""Data-parallel rounds with PyTorch DDP, started the way MONAI Label's trainers start them.

MONAI Label's ``BasicTrainTask`` spawns one process per GPU with
``torch.multiprocessing.spawn`` when the request says ``multi_gpu`` and more than one GPU is
visible; this does the same for our rounds: NCCL on GPUs, gloo on CPU (``world_size``
processes, for testing the path without GPUs). ``fit`` wraps the model in
``DistributedDataParallel`` when a process group exists; rank 0 publishes.
"""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def world_size(multi_gpu: bool, gpus: str = "all", cpu_processes: int = 0) -> int:
    """How many processes a round uses: 1 unless ``multi_gpu``; then one per (listed) GPU, or
    ``cpu_processes`` gloo processes where there is no GPU."""
    if not multi_gpu:
        return 1
    if torch.cuda.is_available():
        count = torch.cuda.device_count() if gpus in ("", "all", None) else len(str(gpus).split(","))
        return max(1, count)
    return max(1, int(cpu_processes))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, size: int, backend: str, fn, args):
    dist.init_process_group(backend=backend, rank=rank, world_size=size)
    try:
        if backend == "nccl":
            torch.cuda.set_device(rank)
        result = fn(rank, *args)
        if rank == 0 and result is not None:
            torch.save(result, os.environ["MUSCLE_DDP_RESULT"])
    finally:
        dist.destroy_process_group()


def run_parallel(fn, size: int, *args, result_path: str):
    """Run ``fn(rank, *args)`` in ``size`` processes; returns rank 0's return value.

    ``fn`` must be a module-level function (it is pickled to the workers); ``result_path``
    is a scratch file through which rank 0 hands its result back.
    """
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(_free_port())  # MONAI Label's random 1234-1334 may be taken
    os.environ["MUSCLE_DDP_RESULT"] = result_path
    mp.spawn(_worker, args=(size, backend, fn, args), nprocs=size, join=True)
    return torch.load(result_path, weights_only=True)  # plain data (dict, numbers, str) by design: no unpickling of objects
