"""The batch infer task without a server: devices, round-robin, failures (GPUs simulated)."""

from __future__ import annotations

import threading

import pytest
import torch

from lib.errors import NotFoundError, UserError
from lib.tasks.batch_infer import MuscleBatchInferTask, batch_devices, check_batch_request


class Store:
    def list_images(self):
        return ["a", "b", "c", "d", "e"]


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_devices_without_a_gpu_are_the_cpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    for request in ({}, {"device": "cuda", "multi_gpu": True, "gpus": "all"}, {"device": "cpu"}):
        assert batch_devices(request) == ["cpu"]


def test_devices_with_gpus(two_gpus):
    assert batch_devices({"device": "cuda", "multi_gpu": True, "gpus": "all"}) == ["cuda:0", "cuda:1"]
    assert batch_devices({"device": "cuda", "multi_gpu": True, "gpus": "1"}) == ["cuda:1"]
    assert batch_devices({"device": "cuda:1", "multi_gpu": False}) == ["cuda:1"]
    assert batch_devices({"device": "cpu", "multi_gpu": True}) == ["cpu"]
    with pytest.raises(UserError, match="gpus"):
        batch_devices({"device": "cuda", "multi_gpu": True, "gpus": "0,2"})


def test_images_go_round_robin_over_the_gpus_one_worker_each_and_a_failure_is_reported(two_gpus):
    seen, threads = {}, set()
    both_running = threading.Barrier(2, timeout=30)  # the first two images run at the same time

    def infer(request, datastore):
        seen[request["image"]] = (request["device"], request["label_tag"], request["save_label"])
        threads.add(threading.current_thread().name)
        if request["image"] in ("a", "b"):
            both_running.wait()
        if request["image"] == "c":
            raise UserError("c: corrupt image data")
        return {"label": request["image"], "tag": request["label_tag"], "params": {}}

    result = MuscleBatchInferTask()({"model": "muscle", "images": "all", "device": "cuda", "multi_gpu": True},
                                    Store(), infer)
    assert list(result) == ["a", "b", "c", "d", "e"]
    assert result["c"] == {"error": "c: corrupt image data"}
    assert all(result[i]["label"] == i for i in "abde")
    assert [seen[i][0] for i in "abcde"] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert {s[1:] for s in seen.values()} == {("original", True)}
    assert len(threads) == 2  # one worker per GPU


def test_all_images_failing_is_an_error():
    def infer(request, datastore):
        raise UserError("unreadable")

    with pytest.raises(UserError, match="all 2 images failed"):
        MuscleBatchInferTask()({"model": "muscle", "images": ["a", "b"], "device": "cpu"}, Store(), infer)


def test_check_batch_request():
    infers = {"muscle": object()}
    check_batch_request({"model": "muscle", "images": "unlabeled", "split_sides": "true"}, infers, Store())
    check_batch_request({"model": "muscle", "images": ["a", "e"], "max_workers": "2"}, infers, Store())
    with pytest.raises(NotFoundError):
        check_batch_request({"model": "other"}, infers, Store())
    with pytest.raises(NotFoundError, match="x"):
        check_batch_request({"model": "muscle", "images": ["a", "x"]}, infers, Store())
    for bad in ({"images": []}, {"images": 3}, {"max_batch_size": "1.5"}, {"logging": "LOUD"}, {"slices": "a,b"},
                {"echo": "first"}, {"label_tag": ""}):
        with pytest.raises(UserError):
            check_batch_request({"model": "muscle", **bad}, infers, Store())
