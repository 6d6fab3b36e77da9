"""Compiled forward passes for serving on CPUs without native bf16 (``torch.compile``, Inductor).

Where oneDNN has no native bf16 kernels (AVX2-only CPUs), the fast path (``lib.networks.fast``)
runs the networks in fp32 eager. Inductor with freezing takes the weights into the graph as
constants, prepacks them for oneDNN and fuses the ReLUs and residual additions into the
convolutions. Measured on a 2-core AMD EPYC with AVX2 only (2026-12-06, batches of 8, medians of
7, one process): the classifier on 128 px crops 0.116 -> 0.064 s per batch, the compact thigh
segmenter on 240 px crops 0.170 -> 0.135 s, the leg ensemble 0.533 -> 0.405 s; logits within
2e-5 of eager, the same argmax. ``POST /infer/muscle`` figures are in the README (Speed).

How: the server registers each network it loads (``allow_compiling``, called by
``lib.models.cache``). The second time ``predict_logits`` sees one input shape for it (a full
batch: a volume's last, partial batch stays eager), a background thread compiles the network for
that shape: 3-25 s of one core, the longer the first time on a machine (Inductor keeps its
kernels in a disk cache). Until then, and for every other shape, the network runs eager, so no
request waits for a compile. A compiled graph serves only the batches it was made for (shape
and strides, ordinary tensors, inference mode): Monte-Carlo dropout and other shapes run eager.

Only on CPU with fp32 inference: bf16 hosts already meet the latency target, and compiled bf16
was not measured. Off unless ``enable`` was called. The server calls it (``--conf
compile_networks false`` keeps it off), but not in MONAI Label's short-lived train and scoring
processes; the command line runs one volume at a time. There a compile would cost more than it
saves. A network that fails to compile (no C++ compiler, say) is logged once and runs eager.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import torch
from torch import nn

logger = logging.getLogger(__name__)

MAX_SHAPES = 4  # compiled input shapes per network: the limb crops come in a few sizes (240, 288... px)
SIGHTINGS = 2  # a shape is compiled once it has been seen this often (one-off shapes stay eager)
DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)

_enabled = False
_lock = threading.Lock()
_jobs: queue.Queue = queue.Queue()  # compiles waiting for the one compile thread
_worker: threading.Thread | None = None
_networks: dict[str, "CompiledNetwork"] = {}  # network name -> its live copy's state (``status``)


def enable(on: bool = True) -> None:
    """Compile the networks registered from now on (``on``), or stop registering them."""
    global _enabled
    _enabled = bool(on)


class CompiledNetwork:
    """The compiled graphs of one inference copy of a network, by input shape."""

    def __init__(self, name: str, model: nn.Module):
        self.name = name
        # keyed by (shape, strides) of the input batch
        self.ready: dict[tuple, object] = {}
        self.pending: set[tuple] = set()
        self.sightings: dict[tuple, int] = {}
        self.failed: str | None = None
        self.compiled_calls = 0
        self.eager_fallbacks = 0
        self._dropouts = [m for m in model.modules() if isinstance(m, DROPOUTS)]

    def sampling(self) -> bool:
        """Monte-Carlo dropout is on (``enable_mc_dropout``): the compiled graphs do not sample."""
        return any(m.training for m in self._dropouts)

    def status(self) -> dict:
        return {"ready": [list(s[0]) for s in self.ready], "pending": [list(s[0]) for s in self.pending],
                "compiled_calls": self.compiled_calls, "eager_fallbacks": self.eager_fallbacks,
                "failed": self.failed}


def allow_compiling(model: nn.Module, name: str, device: str | torch.device) -> None:
    """Register a network loaded for serving (its weights never change afterwards) so that
    ``compiled_forward`` may compile it; nothing happens unless compiling is enabled and the
    network runs fp32 on CPU. The latest copy of ``name`` replaces the previous in ``status``."""
    if not _enabled or torch.device(device).type != "cpu" or getattr(model, "inference_precision", "fp32") != "fp32":
        return
    state = CompiledNetwork(name, model)
    model.compiled_network = state
    with _lock:
        _networks[name] = state


def compiled_forward(model: nn.Module, batch: torch.Tensor):
    """A callable that runs ``batch`` through ``model`` compiled, or None where it must run eager.

    Counts the shape's sightings and queues its compile at the ``SIGHTINGS``-th."""
    state = getattr(model, "compiled_network", None)
    if state is None or state.failed or state.sampling():
        return None
    shape = (tuple(batch.shape), batch.stride())  # a 1-channel batch has two channels-last strides
    graph = state.ready.get(shape)
    if graph is not None:
        return lambda x: _run(state, graph, model, x)
    with _lock:
        seen = state.sightings[shape] = state.sightings.get(shape, 0) + 1
        sample = batch.shape[1:]
        full = max(s[0][0] for s in state.sightings if s[0][1:] == sample)
        # a volume's last, partial batch runs eager: only the full batches of each crop size compile
        if seen == SIGHTINGS and batch.shape[0] == full and len(state.ready) + len(state.pending) < MAX_SHAPES:
            state.pending.add(shape)
            _submit(state, model, shape, batch.dtype, batch.device)
    return None


def _run(state: CompiledNetwork, graph, model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    # No ``set_stance("fail_on_recompile")`` here: the stance is global to the process, and the
    # compile thread's first call under it would fail. A graph only gets the batches it was made
    # for (same shape and strides, ordinary tensors, inference mode, dropout off), so its guards hold.
    try:
        out = graph(batch)
        state.compiled_calls += 1
        return out
    except Exception as error:  # never expected: answer eagerly rather than fail the request
        state.eager_fallbacks += 1
        logger.warning(f"{state.name}: eager for {tuple(batch.shape)} ({type(error).__name__}: {error})")
        return model(batch)


def _submit(*job) -> None:
    """Queue a compile for the one compile thread (a daemon: a server stopping mid-compile exits
    at once). Called with ``_lock`` held."""
    global _worker
    _jobs.put(job)
    if _worker is None or not _worker.is_alive():
        _worker = threading.Thread(target=_compile_forever, name="compile", daemon=True)
        _worker.start()


def _compile_forever() -> None:
    while True:
        _compile(*_jobs.get())


def _compile(state: CompiledNetwork, model: nn.Module, shape: tuple, dtype, device) -> None:
    start = time.perf_counter()
    try:
        graph = torch.compile(model, dynamic=False)
        example = torch.empty_strided(*shape, dtype=dtype, device=device).zero_()
        with torch.inference_mode(), torch._inductor.config.patch(freezing=True):
            graph(example)  # the compile happens here, on the first call
        state.ready[shape] = graph
        logger.info(f"{state.name}: compiled for input {shape[0]} in {time.perf_counter() - start:.1f} s")
    except Exception as error:  # e.g. no C++ compiler: this network stays eager
        state.failed = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
        logger.warning(f"{state.name}: not compiled, runs eager ({state.failed})")
    finally:
        with _lock:
            state.pending.discard(shape)


def status() -> dict:
    """Per network name: compiled shapes (ready, pending), calls served compiled, eager fallbacks
    and the compile error if any; empty when compiling is off."""
    with _lock:
        return {name: state.status() for name, state in _networks.items()}


def wait_until_compiled(timeout: float = 300.0) -> bool:
    """Block until no compile is pending (tests, benchmarks); False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with _lock:
            if not any(state.pending for state in _networks.values()):
                return True
        time.sleep(0.2)
    return False
