"""Published model versions: the live file, keep K, numbering, rollback, history, atomic copies."""

from __future__ import annotations

import os
import stat

import pytest

from lib import files as files_module
from lib.errors import NotFoundError, UserError
from lib.files import copy_atomic
from lib.models.registry import ModelRegistry

SHIPPED = b"shipped weights"


def candidate(tmp_path, tag: str):
    """A checkpoint-like file with bytes unique to ``tag`` (the registry only copies files)."""
    path = tmp_path / "candidates" / f"{tag}.pt"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(f"weights {tag} ".encode() * 200)
    return path


def make_registry(tmp_path, keep: int = 5) -> ModelRegistry:
    shipped = tmp_path / "weights" / "segmentation_thigh.pt"
    shipped.parent.mkdir(exist_ok=True)
    shipped.write_bytes(SHIPPED)
    return ModelRegistry(tmp_path / "model", "segmentation_thigh", shipped, keep=keep)


def temp_files(folder):
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_current_is_the_shipped_file_until_something_is_published(tmp_path):
    reg = make_registry(tmp_path)
    assert reg.current() == reg.shipped and reg.current().read_bytes() == SHIPPED
    assert not reg.live.exists() and reg.versions() == [] and reg.history() == []
    reg.publish(candidate(tmp_path, "a"), {})
    assert reg.current() == reg.live == tmp_path / "model" / "segmentation_thigh.pt"
    assert reg.shipped.read_bytes() == SHIPPED  # publishing never touches the shipped weights


def test_publish_numbers_versions_one_two_three(tmp_path):
    reg = make_registry(tmp_path)
    assert [reg.publish(candidate(tmp_path, t), {}) for t in "abc"] == [1, 2, 3]
    assert sorted(p.name for p in reg.folder.glob("v*.pt")) == ["v0001.pt", "v0002.pt", "v0003.pt"]


def test_the_live_file_holds_exactly_the_published_candidate(tmp_path):
    reg = make_registry(tmp_path)
    for tag in "ab":
        cand = candidate(tmp_path, tag)
        version = reg.publish(cand, {})
        assert reg.live.read_bytes() == cand.read_bytes()
        assert (reg.folder / f"v{version:04d}.pt").read_bytes() == cand.read_bytes()
        assert cand.is_file()  # the candidate is copied, not moved


def test_versions_mark_exactly_one_live_and_hold_the_metrics(tmp_path):
    reg = make_registry(tmp_path)
    for tag, score in (("a", 0.71), ("b", 0.72), ("c", 0.73)):
        reg.publish(candidate(tmp_path, tag), {"live_score": 0.7, "candidate_score": score, "train_slices": 12,
                                               "metric": "mean Dice"})
    kept = reg.versions()
    assert [v["version"] for v in kept] == [1, 2, 3]
    assert [v["live"] for v in kept] == [False, False, True]
    assert [v["candidate_score"] for v in kept] == [0.71, 0.72, 0.73]
    assert all(v["live_score"] == 0.7 and v["train_slices"] == 12 and v["metric"] == "mean Dice" for v in kept)
    assert [os.path.basename(v["path"]) for v in kept] == ["v0001.pt", "v0002.pt", "v0003.pt"]


def test_only_the_newest_keep_versions_stay_on_disk(tmp_path):
    reg = make_registry(tmp_path, keep=2)
    for tag in "abc":
        reg.publish(candidate(tmp_path, tag), {"candidate_score": 0.5})
    on_disk = sorted(p.name for p in reg.folder.iterdir() if p.name.startswith("v"))
    assert on_disk == ["v0002.json", "v0002.pt", "v0003.json", "v0003.pt"]
    assert [v["version"] for v in reg.versions()] == [2, 3]
    assert reg.live.read_bytes() == candidate(tmp_path, "c").read_bytes()


def test_numbers_are_never_reused_after_pruning(tmp_path):
    reg = make_registry(tmp_path, keep=1)
    assert [reg.publish(candidate(tmp_path, t), {}) for t in "abc"] == [1, 2, 3]
    assert [v["version"] for v in reg.versions()] == [3]
    reg.record({"event": "reject", "reason": "worse"})
    assert reg.publish(candidate(tmp_path, "d"), {}) == 4
    # even with every version file gone (a user cleaning up), the history keeps the count
    for p in reg.folder.glob("v*"):
        p.unlink()
    assert reg.publish(candidate(tmp_path, "e"), {}) == 5


def test_rollback_walks_back_through_kept_versions_to_the_shipped_weights(tmp_path):
    reg = make_registry(tmp_path, keep=2)
    for tag in "abc":
        reg.publish(candidate(tmp_path, tag), {})
    assert reg.rollback() == {"event": "rollback", "version": 2}
    assert reg.live.read_bytes() == candidate(tmp_path, "b").read_bytes()
    assert [v["live"] for v in reg.versions()] == [True, False]
    # v0002 is the first kept version (v0001 was pruned): one more step is the shipped weights
    assert reg.rollback() == {"event": "rollback", "version": 0, "to": "shipped"}
    assert not reg.live.exists() and reg.current() == reg.shipped
    assert [v["live"] for v in reg.versions()] == [False, False]
    assert [v["version"] for v in reg.versions()] == [2, 3]  # rollback deletes no version
    with pytest.raises(UserError, match="nothing published"):
        reg.rollback()


def test_rollback_to_a_named_version(tmp_path):
    reg = make_registry(tmp_path, keep=2)
    for tag in "abc":
        reg.publish(candidate(tmp_path, tag), {})
    reg.rollback()
    reg.rollback()  # shipped weights live
    assert reg.rollback(version=3) == {"event": "rollback", "version": 3}
    assert reg.live.read_bytes() == candidate(tmp_path, "c").read_bytes()
    assert reg.rollback(version=2)["version"] == 2
    assert reg.live.read_bytes() == candidate(tmp_path, "b").read_bytes()


def test_rollback_to_a_missing_version_names_the_kept_ones(tmp_path):
    reg = make_registry(tmp_path, keep=2)
    for tag in "abc":
        reg.publish(candidate(tmp_path, tag), {})
    live_before = reg.live.read_bytes()
    for missing in (1, 9):  # pruned, never published
        with pytest.raises(NotFoundError, match=rf"no kept version {missing} \(kept: \[2, 3\]\)"):
            reg.rollback(version=missing)
    assert reg.live.read_bytes() == live_before
    assert [e["event"] for e in reg.history()] == ["publish"] * 3  # a failed rollback is not recorded


def test_rollback_with_nothing_published_is_a_user_error(tmp_path):
    reg = make_registry(tmp_path)
    with pytest.raises(UserError, match="segmentation_thigh: nothing published"):
        reg.rollback()
    with pytest.raises(NotFoundError, match=r"kept: none"):
        reg.rollback(version=1)
    assert reg.current() == reg.shipped and reg.history() == []


def test_history_records_publish_reject_and_rollback_in_order(tmp_path):
    reg = make_registry(tmp_path)
    reg.publish(candidate(tmp_path, "a"), {"live_score": 0.6, "candidate_score": 0.7, "train_slices": 3})
    reg.record({"event": "reject", "live_score": 0.7, "candidate_score": 0.5, "reason": "worse"})
    reg.publish(candidate(tmp_path, "b"), {"live_score": 0.7, "candidate_score": 0.75})
    reg.rollback()
    events = reg.history()
    assert [(e["event"], e.get("version")) for e in events] == [
        ("publish", 1), ("reject", None), ("publish", 2), ("rollback", 1)]
    assert (events[0]["live_score"], events[0]["candidate_score"]) == (0.6, 0.7)
    assert "train_slices" not in events[0]  # only the scores go to the history, the rest to vNNNN.json
    assert events[1]["reason"] == "worse"
    times = [e["time"] for e in events]
    assert times == sorted(times)
    assert ModelRegistry(reg.model_dir, reg.network, reg.shipped).history() == events  # it is on disk


def test_a_copy_from_a_missing_source_leaves_the_live_file_whole(tmp_path):
    reg = make_registry(tmp_path)
    reg.publish(candidate(tmp_path, "a"), {})
    before = reg.live.read_bytes()
    with pytest.raises(FileNotFoundError):
        copy_atomic(tmp_path / "missing.pt", reg.live)
    assert reg.live.read_bytes() == before
    assert temp_files(reg.model_dir) == []
    # the same through publish: nothing changes, no version number is used up
    with pytest.raises(FileNotFoundError):
        reg.publish(tmp_path / "missing.pt", {})
    assert reg.live.read_bytes() == before and temp_files(reg.model_dir) == []
    assert [v["version"] for v in reg.versions()] == [1] and len(reg.history()) == 1
    assert reg.publish(candidate(tmp_path, "b"), {}) == 2


def test_a_copy_interrupted_midway_leaves_the_live_file_whole(tmp_path, monkeypatch):
    reg = make_registry(tmp_path)
    reg.publish(candidate(tmp_path, "a"), {})
    before = reg.live.read_bytes()

    def half_then_interrupt(src, dst, length=0):  # the copy killed half way (Ctrl-C, SIGTERM handler)
        data = src.read()
        dst.write(data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(files_module.shutil, "copyfileobj", half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        reg.publish(candidate(tmp_path, "b"), {})
    assert reg.live.read_bytes() == before
    assert temp_files(reg.model_dir) == []
    assert [v["version"] for v in reg.versions()] == [1]


def test_a_reader_of_the_old_live_file_is_not_disturbed_by_a_publish(tmp_path):
    reg = make_registry(tmp_path)
    reg.publish(candidate(tmp_path, "a"), {})
    with open(reg.live, "rb") as reader:  # inference loading the live weights
        head = reader.read(10)
        reg.publish(candidate(tmp_path, "b"), {})
        assert head + reader.read() == candidate(tmp_path, "a").read_bytes()  # replaced, not overwritten
    assert reg.live.read_bytes() == candidate(tmp_path, "b").read_bytes()


def test_copy_atomic_creates_the_folder_and_a_world_readable_file(tmp_path):
    src = candidate(tmp_path, "a")
    dest = tmp_path / "new" / "deeper" / "model.pt"
    copy_atomic(src, dest)
    assert dest.read_bytes() == src.read_bytes()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644  # mkstemp's 0600 would hide it from a server user
    assert temp_files(tmp_path) == []
