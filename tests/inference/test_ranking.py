"""Which slices to correct next: stratified, spread, damped picks from per-slice scores."""

from lib.inference.ranking import choose_image, pick_spread, pick_stratified, rank_slices


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
