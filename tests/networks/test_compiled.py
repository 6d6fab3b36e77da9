"""Compiled forward passes (lib.networks.compiled): compiled only for a recurring shape, in the
background, the same logits as eager, eager for everything else; and the server's muscle answer
the same compiled as eager."""

import shutil
import time

import nibabel as nib
import numpy as np
import pytest
import requests
import torch

from lib.data.phantoms.embedded import StudySpec, write_study
from lib.networks import compiled
from lib.networks.blocks import enable_mc_dropout
from lib.networks.classifier import RegionClassifier
from lib.networks.fast import cpu_has_fast_bf16, predict_logits, prepare_for_inference
from tests.conftest import Server, copy_studies
from tests.server.test_infer_api import multipart

pytestmark = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("clang++") is None,
                                reason="Inductor needs a C++ compiler; without one the networks run eager")


@pytest.fixture
def compiling():
    compiled.enable(True)
    yield
    compiled.enable(False)


def small_network():
    torch.manual_seed(0)
    return prepare_for_inference(RegionClassifier(width=4, input_dropout=0.2), precision="fp32")


def test_a_recurring_shape_is_compiled_in_the_background_and_gives_eager_logits(compiling):
    model = small_network()
    compiled.allow_compiling(model, "test_small_classifier", "cpu")
    x = torch.rand(4, 1, 128, 128)
    eager = model(x.contiguous(memory_format=torch.channels_last)).detach()
    first = predict_logits(model, x)  # eager; first sighting
    assert compiled.status()["test_small_classifier"]["pending"] == []
    predict_logits(model, x)  # second sighting: queued
    assert compiled.wait_until_compiled(timeout=300)
    state = compiled.status()["test_small_classifier"]
    assert state["failed"] is None and state["ready"] == [[4, 1, 128, 128]]
    out = predict_logits(model, x)
    state = compiled.status()["test_small_classifier"]
    assert state["compiled_calls"] == 1 and state["eager_fallbacks"] == 0
    assert torch.allclose(out, eager, atol=1e-4) and torch.allclose(first, eager, atol=1e-6)
    assert torch.equal(out.argmax(1), eager.argmax(1))

    # a smaller (a volume's last) batch stays eager, however often it comes; so does Monte-Carlo
    # dropout, which the compiled graph cannot sample
    for _ in range(3):
        predict_logits(model, torch.rand(3, 1, 128, 128))
    state = compiled.status()["test_small_classifier"]
    assert state["ready"] == [[4, 1, 128, 128]] and state["pending"] == []
    enable_mc_dropout(model, True)
    samples = [predict_logits(model, x) for _ in range(2)]
    enable_mc_dropout(model, False)
    assert not torch.equal(samples[0], samples[1]), "dropout did not sample: the compiled graph ran"
    assert compiled.status()["test_small_classifier"]["compiled_calls"] == 1


def test_nothing_is_compiled_when_off_or_for_bf16():
    compiled.enable(False)
    model = small_network()
    compiled.allow_compiling(model, "test_off", "cpu")
    assert not hasattr(model, "compiled_network") and "test_off" not in compiled.status()
    compiled.enable(True)
    try:
        model.inference_precision = "bf16"
        compiled.allow_compiling(model, "test_bf16", "cpu")
        assert not hasattr(model, "compiled_network")
    finally:
        compiled.enable(False)


def muscle_label(server, image_id: str, path) -> np.ndarray:
    r = requests.post(f"{server.url}/infer/muscle", params={"image": image_id}, timeout=600)
    assert r.status_code == 200, r.text
    path.write_bytes(multipart(r)["image"])
    return np.asarray(nib.load(path).dataobj)


@pytest.mark.skipif(cpu_has_fast_bf16(), reason="this CPU serves bf16 (native kernels), which is never compiled: "
                                               "test_nothing_is_compiled_when_off_or_for_bf16 covers it")
def test_the_server_compiles_what_it_serves_and_its_labels_do_not_change(tmp_path):
    studies = copy_studies(tmp_path / "studies")
    spec = StudySpec("thigh", 20_951, "mild", 12, (432, 432), (1.04, 1.04, 5.0))  # 24 limb crops: 3 batches
    write_study(studies, spec)
    with Server(studies, tmp_path / "server.log", extra_args=["--conf", "auto_score_slices", "false"],
                compile_networks=True) as server:
        eager = muscle_label(server, spec.id, tmp_path / "eager.nii.gz")  # the compiles start during this request
        deadline = time.monotonic() + 300
        while True:
            networks = requests.get(f"{server.url}/info/", timeout=30).json()["compiled_networks"]
            if networks and all(n["ready"] and not n["pending"] for n in networks.values()) or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        assert set(networks) >= {"classifier", "segmentation_thigh"}, networks
        assert all(n["failed"] is None and n["ready"] for n in networks.values()), networks
        again = muscle_label(server, spec.id, tmp_path / "compiled.nii.gz")
        networks = requests.get(f"{server.url}/info/", timeout=30).json()["compiled_networks"]
        assert all(n["compiled_calls"] > 0 for n in networks.values()), networks
        assert eager.shape == again.shape and (eager > 0).sum() > 1000
        assert np.array_equal(eager, again)
