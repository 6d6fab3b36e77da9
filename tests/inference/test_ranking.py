"""Which slices to correct next: stratified, spread, damped picks from per-slice scores."""

import random
from collections import Counter

import numpy as np

from lib.inference.ranking import (POWER_BETA, choose_by_class, choose_image, draw_foreground, pick_spread, pick_stratified,
                                   power_noised, rank_slices, tissue_scores)


def test_pick_spread_takes_the_best_slices_never_adjacent():
    assert pick_spread([(0.9, 4), (0.8, 5), (0.7, 3), (0.6, 8), (0.5, 1)], 3) == [4, 8, 1]


def ranked(scores: dict[int, float]) -> list[tuple[float, int]]:
    return sorted(((v, k) for k, v in scores.items()), reverse=True)


def test_stratified_picks_cover_the_limb_instead_of_bunching_at_its_uncertain_end():
    rising = ranked({k: k / 12 for k in range(12)})  # the most uncertain slices all at one end
    assert pick_spread(rising, 3) == [11, 9, 7]
    assert pick_stratified(rising, 3) == [11, 7, 3]  # the best of each third, best first
    assert pick_stratified(rising, 1) == [11]


def test_stratified_picks_are_never_adjacent_and_top_up_from_crowded_stretches():
    assert pick_stratified(ranked({1: 0.9, 2: 0.8, 5: 0.7, 3: 0.6, 0: 0.1, 4: 0.1}), 3) == [1, 5, 3]
    # the middle stretch is empty: its place goes to the best non-adjacent slice elsewhere
    assert pick_stratified(ranked({0: 0.9, 10: 0.5, 1: 0.4, 2: 0.3}), 3) == [0, 10, 2]
    assert pick_stratified(ranked({1: 0.9, 10: 0.5, 0: 0.4, 2: 0.3}), 3) == [1, 10]
    assert pick_stratified([], 3) == []


def test_the_image_with_the_best_picks_wins_and_annotated_slices_are_never_picked():
    def slices(values):
        return [{"slice": k, "score": v, "region": "thigh", "empty": False} for k, v in enumerate(values)]

    spiky = slices([0.0] * 11 + [1.0])  # one very uncertain slice, the rest certain
    broad = slices([0.4] * 12)
    assert choose_image([("spiky", spiky, set()), ("broad", broad, set())], 1)[0] == "spiky"
    key, picks, _ = choose_image([("spiky", spiky, set()), ("broad", broad, set())], 3)
    assert key == "broad" and len(picks) == 3
    key, picks, _ = choose_image([("broad", broad, {0, 5, 11})], 4)
    assert not set(picks) & {0, 5, 11}
    assert choose_image([("done", slices([0.5, 0.5]), {0, 1})], 2) is None


def test_a_typical_slice_beats_a_slightly_more_uncertain_outlier_when_scores_carry_typicality():
    scores = [{"slice": 0, "score": 0.5, "region": "thigh", "empty": False, "typicality": 0.2},
              {"slice": 5, "score": 0.4, "region": "thigh", "empty": False, "typicality": 1.0}]
    assert rank_slices(scores, set())[0][1] == 5
    assert rank_slices([{k: v for k, v in s.items() if k != "typicality"} for s in scores], set())[0][1] == 0


def test_foreground_draws_follow_tissue_area_and_skip_empty_annotated_and_adjacent_slices():
    fractions = [0.0, 0.005, 0.3, 0.3, 0.6, 0.6, 0.05, 0.0]  # slices 0, 1, 7: (almost) no tissue
    rng = random.Random(0)
    draws = [draw_foreground(fractions, {5}, 3, rng, 0.01) for _ in range(400)]
    assert all(set(d) <= {2, 3, 4, 6} and all(abs(a - b) > 1 for a in d for b in d if a != b) for d in draws)
    assert {len(d) for d in draws} == {2, 3}  # [2, 4, 6] fits; after 3, only 6 is left
    first = Counter(d[0] for d in draws)
    assert first[4] > first[2] > first[6]  # twice the tissue, about twice as often; a sliver rarely
    assert draw_foreground([0.0, 0.0], set(), 2, rng, 0.01) == []


def test_an_unscored_image_offers_its_largest_cross_sections_spread_along_the_limb_and_no_region():
    fractions = [0.0, 0.2, 0.5, 0.4, 0.3, 0.6, 0.2, 0.1, 0.0]
    scores = tissue_scores(fractions, 0.01)
    assert [s["empty"] for s in scores] == [True] + [False] * 7 + [True]
    key, picks, _ = choose_image([("unscored", scores, set())], 2)
    assert key == "unscored" and sorted(picks) == [2, 5]  # the largest of each half
    assert choose_image([("unscored", scores, set())], 2, region="thigh") is None


def test_power_noising_draws_in_proportion_to_score_to_the_power_beta():
    scores = ranked({0: 0.5, 1: 0.6, 2: 0.75})
    rng = np.random.default_rng(1)
    tops = Counter(power_noised(scores, rng)[0][1] for _ in range(6000))
    expected = np.array([0.5, 0.6, 0.75]) ** POWER_BETA
    expected = expected / expected.sum()
    for k in range(3):
        assert abs(tops[k] / 6000 - expected[k]) < 0.02, (k, tops[k] / 6000, expected[k])
    assert tops[2] > tops[1] > tops[0] > 0  # the most uncertain most often, the others still drawn
    again = power_noised(scores, np.random.default_rng(7)), power_noised(scores, np.random.default_rng(7))
    assert again[0] == again[1]  # the same seed, the same draw
    assert power_noised([], rng) == []


def test_power_noised_image_choice_still_favours_the_uncertain_image_and_never_picks_annotated_slices():
    def slices(values):
        return [{"slice": k, "score": v, "region": "thigh", "empty": False} for k, v in enumerate(values)]

    sure, unsure = slices([0.4] * 10), slices([0.5] * 10)
    rng = np.random.default_rng(3)
    wins = Counter(choose_image([("sure", sure, set()), ("unsure", unsure, set())], 4, rng=rng)[0]
                   for _ in range(300))
    assert wins["unsure"] > 250 and wins["sure"] > 0  # a draw, not the argmax: the surer image is offered too
    for _ in range(50):
        key, picks, _ = choose_image([("long", slices([0.5] * 16), {2, 3})], 4, rng=rng)
        assert len(picks) == 4 and not set(picks) & {2, 3}
        assert all(abs(a - b) > 1 for a in picks for b in picks if a != b)


def class_slices(shares: list[dict], region="thigh"):
    """Slice scores whose plain score is the sum of the muscles' shares (as score_volume's)."""
    return [{"slice": k, "score": sum(c.values()), "region": region, "empty": False, "classes": c}
            for k, c in enumerate(shares)]


def test_class_stratified_picks_ask_for_a_small_muscle_as_often_as_a_large_one():
    # Slice 2 is where the small muscle is uncertain; the large muscle's uncertainty is 10 times
    # as big everywhere, so the plain ranking never picks slice 2 first.
    shares = [{"large": 0.30, "small": 0.001} for _ in range(8)]
    shares[2] = {"large": 0.25, "small": 0.03}
    shares[6] = {"large": 0.40, "small": 0.001}
    scores = class_slices(shares)
    assert rank_slices(scores, set())[0][1] == 6 and rank_slices(scores, set())[-1][1] == 2  # plain: last
    rng = np.random.default_rng(0)
    picked_for = Counter()
    for _ in range(200):
        key, picks, value, muscles = choose_by_class([("a", scores, set())], 1, rng)
        assert key == "a" and len(picks) == 1 and value > 0
        picked_for[muscles[0]] += 1
        if muscles[0] == "small":
            assert picks == [2]  # 0.03 against 0.001: (30)^8 times as likely
    assert 70 < picked_for["small"] < 130 and picked_for["small"] + picked_for["large"] == 200


def test_class_stratified_answers_n_slices_one_per_drawn_muscle_never_adjacent_or_annotated():
    muscles = ["m1", "m2", "m3"]
    shares = [{m: 0.1 + 0.01 * ((k + i) % 5) for i, m in enumerate(muscles)} for k in range(12)]
    rng = np.random.default_rng(2)
    for n in (2, 3, 5):  # 5 > 3 muscles: every muscle once, then again
        key, picks, _, picked_for = choose_by_class([("a", class_slices(shares), {4, 5})], n, rng)
        assert len(picks) == n and not set(picks) & {4, 5}
        assert all(abs(a - b) > 1 for a in picks for b in picks if a != b)
        assert sorted(picked_for[:3]) == sorted(muscles[:min(n, 3)]) if n >= 3 else len(set(picked_for)) == n


def test_class_stratified_prefers_images_showing_the_drawn_muscles_and_falls_back_to_plain_scores():
    thigh = class_slices([{"vastus_lateralis": 0.2} for _ in range(6)])
    leg = class_slices([{"soleus": 0.2} for _ in range(6)], region="leg")
    rng = np.random.default_rng(5)
    for _ in range(20):  # one muscle per region: the image that shows the drawn one wins
        key, _, _, picked_for = choose_by_class([("thigh", thigh, set()), ("leg", leg, set())], 1, rng)
        assert picked_for == [{"thigh": "vastus_lateralis", "leg": "soleus"}[key]]
    key, _, _, picked_for = choose_by_class([("thigh", thigh, set()), ("leg", leg, set())], 1, rng, region="leg")
    assert key == "leg" and picked_for == ["soleus"]
    key, picks, _, picked_for = choose_by_class([("thigh", thigh, set())], 3, rng, region="thigh")
    assert len(picks) == 3 and picked_for == ["vastus_lateralis"] * 3  # fewer muscles than slices: again
    key, picks, _, picked_for = choose_by_class([("thigh", thigh, set()), ("leg", leg, set())], 2, rng)
    assert len(picks) == 2 and None in picked_for  # the other region's muscle: topped up by plain score
    old = [{k: v for k, v in s.items() if k != "classes"} for s in thigh]  # scored before classes were kept
    key, picks, _, picked_for = choose_by_class([("old", old, set())], 2, rng)
    assert key == "old" and len(picks) == 2 and picked_for == [None, None]
    assert choose_by_class([("old", old, set(range(6)))], 2, rng) is None
