"""Published versions (publish, keep K, rollback) and the fixed train/validation split."""

from __future__ import annotations

import json

import pytest

from lib.errors import NotFoundError, UserError
from lib.training.registry import ModelRegistry, atomic_copy
from lib.training.splits import SplitBook, hashed_to_validation


def candidate(tmp_path, text: str):
    path = tmp_path / f"cand_{text}.pt"
    path.write_bytes(text.encode() * 100)
    return path


@pytest.fixture
def registry(tmp_path):
    shipped = tmp_path / "shipped.pt"
    shipped.write_bytes(b"shipped")
    return ModelRegistry(tmp_path / "model", "segmentation_thigh", shipped, keep=2)


def test_publish_keeps_the_newest_versions_and_marks_the_live_one(registry, tmp_path):
    assert registry.current() == registry.shipped
    versions = [registry.publish(candidate(tmp_path, t), {"live_score": 0.8, "candidate_score": s})
                for t, s in (("a", 0.81), ("b", 0.82), ("c", 0.83))]
    assert versions == [1, 2, 3]
    assert registry.current() == registry.live and registry.live.read_bytes() == b"c" * 100
    kept = registry.versions()
    assert [v["version"] for v in kept] == [2, 3]  # keep=2
    assert [v["live"] for v in kept] == [False, True] and kept[1]["candidate_score"] == 0.83
    registry.record({"event": "reject", "reason": "worse"})
    assert registry.publish(candidate(tmp_path, "d"), {}) == 4  # numbers are never reused
    assert [e["event"] for e in registry.history()] == ["publish"] * 3 + ["reject", "publish"]


def test_rollback_walks_back_to_the_shipped_weights(registry, tmp_path):
    with pytest.raises(UserError, match="nothing published"):
        registry.rollback()
    for t in ("a", "b"):
        registry.publish(candidate(tmp_path, t), {})
    assert registry.rollback() == {"event": "rollback", "version": 1}
    assert registry.live.read_bytes() == b"a" * 100
    assert registry.rollback()["to"] == "shipped" and registry.current() == registry.shipped
    assert registry.rollback(version=2)["version"] == 2 and registry.live.read_bytes() == b"b" * 100
    with pytest.raises(NotFoundError, match=r"no kept version 9 \(kept: \[1, 2\]\)"):
        registry.rollback(version=9)


def test_a_failed_copy_leaves_the_live_file_whole(registry, tmp_path):
    registry.publish(candidate(tmp_path, "a"), {})
    with pytest.raises(FileNotFoundError):
        atomic_copy(tmp_path / "missing.pt", registry.live)
    assert registry.live.read_bytes() == b"a" * 100
    assert not [p for p in registry.live.parent.iterdir() if p.name.endswith(".tmp")]


def test_the_first_image_trains_and_later_ones_follow_their_hash(tmp_path):
    to_val = next(f"img{i}" for i in range(1000) if hashed_to_validation(f"img{i}", 0.2))
    to_train = next(f"img{i}" for i in range(1000) if not hashed_to_validation(f"img{i}", 0.2))
    book = SplitBook(tmp_path / "splits.json")
    assert book.assign([to_val]) == {to_val: "train"}  # nothing trains yet: the first image does
    other_val = next(f"x{i}" for i in range(1000) if hashed_to_validation(f"x{i}", 0.2))
    assert book.assign([to_train, other_val]) == {to_train: "train", other_val: "val"}


def test_assignments_persist_and_never_change(tmp_path):
    path = tmp_path / "splits.json"
    first = SplitBook(path).assign([f"img{i}" for i in range(50)])
    assert json.loads(path.read_text()) == first
    again = SplitBook(path, val_fraction=0.9).assign([f"img{i}" for i in range(60)])
    assert {k: again[k] for k in first} == first  # another fraction, more ids: old ones unchanged
    assert SplitBook(path).assign(["img3"]) == {"img3": first["img3"]}


def test_about_the_validation_fraction_goes_to_validation():
    share = sum(hashed_to_validation(f"case_{i}", 0.2) for i in range(1000)) / 1000
    assert 0.15 <= share <= 0.25
