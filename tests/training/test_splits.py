"""The fixed, growing train/validation split: first image trains, then the hash decides, forever."""

from __future__ import annotations

import json

import pytest

from lib.training.splits import SplitBook, hashed_to_validation


def ids_where(to_val: bool, prefix: str = "img", fraction: float = 0.2, count: int = 1) -> list[str]:
    found = [f"{prefix}{i}" for i in range(10_000) if hashed_to_validation(f"{prefix}{i}", fraction) == to_val]
    assert len(found) >= count
    return found[:count]


def by_hash(ids, fraction: float = 0.2) -> dict[str, str]:
    return {i: "val" if hashed_to_validation(i, fraction) else "train" for i in ids}


def test_the_first_image_ever_seen_trains_even_if_its_hash_says_validation(tmp_path):
    [first] = ids_where(to_val=True)
    book = SplitBook(tmp_path / "splits.json", 0.2)
    assert book.assign([first]) == {first: "train"}
    # from now on the hash decides, for an id that hashes like the first one too
    [second] = ids_where(to_val=True, prefix="other")
    assert book.assign([second]) == {second: "val"}


def test_in_a_first_batch_only_the_first_sorted_id_is_forced_to_train(tmp_path):
    vals = ids_where(to_val=True, prefix="case", count=5)
    trains = ids_where(to_val=False, prefix="case", count=5)
    ids = vals + trains
    first = sorted(ids)[0]
    got = SplitBook(tmp_path / "splits.json").assign(list(reversed(ids)))
    assert got == {**by_hash(ids), first: "train"}
    assert list(got.values()).count("val") == 5 - (first in vals)


def test_later_ids_follow_their_hash(tmp_path):
    book = SplitBook(tmp_path / "splits.json", 0.2)
    book.assign(ids_where(to_val=False, prefix="seed"))
    later = [f"img{i}" for i in range(40)]
    got = book.assign(later)
    assert got == by_hash(later)
    assert "val" in got.values() and "train" in got.values()  # the check above is not vacuous


def test_assignments_are_written_to_the_json_file(tmp_path):
    path = tmp_path / "model" / "splits.json"  # the folder is created
    got = SplitBook(path).assign([f"img{i}" for i in range(30)])
    assert json.loads(path.read_text()) == got
    assert list(json.loads(path.read_text())) == sorted(got)  # sorted keys: stable diffs


def test_a_fresh_book_on_the_same_path_returns_the_same_assignment(tmp_path):
    path = tmp_path / "splits.json"
    ids = [f"img{i}" for i in range(30)]
    first = SplitBook(path).assign(ids)
    assert SplitBook(path).assign(ids) == first
    assert SplitBook(path).assign(list(reversed(ids))) == first


def test_assignments_never_change_with_another_val_fraction(tmp_path):
    path = tmp_path / "splits.json"
    old = [f"img{i}" for i in range(60)]
    first = SplitBook(path, 0.2).assign(old)
    new = [f"new{i}" for i in range(60)]
    got = SplitBook(path, 0.9).assign(old + new)
    assert {i: got[i] for i in old} == first
    assert {i: got[i] for i in new} == by_hash(new, 0.9)  # new ids use the new fraction
    # the 0.9 rule would move some old ids: the test would catch a re-assignment
    assert by_hash(old, 0.9) != first


def test_assignments_survive_the_id_set_shrinking_and_growing(tmp_path):
    path = tmp_path / "splits.json"
    ids = [f"img{i}" for i in range(40)]
    first = SplitBook(path).assign(ids)
    subset = ids[5:12]
    assert SplitBook(path).assign(subset) == {i: first[i] for i in subset}
    assert json.loads(path.read_text()) == first  # ids not asked about are not forgotten
    more = ids + [f"late{i}" for i in range(20)]
    grown = SplitBook(path).assign(more)
    assert {i: grown[i] for i in ids} == first
    assert set(json.loads(path.read_text())) == set(more)


def test_the_split_does_not_depend_on_arrival_order(tmp_path):
    [anchor] = ids_where(to_val=False, prefix="anchor")  # the first image, hashed to train anyway
    ids = [f"img{i}" for i in range(50)]
    at_once = SplitBook(tmp_path / "a.json").assign([anchor, *ids])
    one_by_one = SplitBook(tmp_path / "b.json")
    one_by_one.assign([anchor])
    for image_id in reversed(ids):
        one_by_one.assign([image_id])
    assert one_by_one.assigned == at_once


@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_about_val_fraction_of_many_ids_go_to_validation(tmp_path, fraction):
    got = SplitBook(tmp_path / "splits.json", fraction).assign([f"subject_{i:04d}" for i in range(1000)])
    share = list(got.values()).count("val") / len(got)
    assert fraction - 0.05 <= share <= fraction + 0.05


def test_a_zero_fraction_sends_everything_to_train(tmp_path):
    got = SplitBook(tmp_path / "splits.json", 0.0).assign([f"img{i}" for i in range(200)])
    assert set(got.values()) == {"train"}
