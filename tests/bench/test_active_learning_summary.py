"""The active-learning benchmark's summary: slices to reach random's final Dice, and budgets
where a strategy trails random by more than one sd, from the curves of every seed; and merging
a new strategy's run into earlier results."""

import pytest

from bench.bench_active_learning import merged, summarise


def test_saving_and_budgets_below_random_come_from_the_mean_curves():
    random_runs = [[(0, 0.2), (4, 0.4), (8, 0.5), (12, 0.6)], [(0, 0.2), (4, 0.4), (7, 0.52), (11, 0.62)]]
    fast = [[(0, 0.2), (4, 0.45), (8, 0.63), (12, 0.65)], [(0, 0.2), (4, 0.47), (8, 0.61), (12, 0.66)]]
    slow = [[(0, 0.2), (4, 0.2), (8, 0.5), (12, 0.58)], [(0, 0.2), (4, 0.22), (8, 0.52), (12, 0.6)]]
    res = summarise({"n": 4, "rounds": 3, "curves": {"random": random_runs, "fast": fast, "slow": slow}})
    reach = res["slices_for_random_final_dice"]
    assert reach["random"] == {"slices": 12, "dice": 0.61}  # budgets are rounds x n, random got 11 in one seed
    assert reach["fast"]["slices"] == 8 and reach["fast"]["saving"] == 0.333
    assert reach["fast"]["budgets_below_random_by_over_1sd"] == []
    assert reach["slow"]["slices"] is None and reach["slow"]["saving"] is None
    assert reach["slow"]["budgets_below_random_by_over_1sd"] == [4, 12]  # 0.21 vs 0.40 ± 0.00; 0.59 vs 0.61 ± 0.01
    assert res["mean_dice_over_budgets"] == {"random": 0.5067, "fast": 0.5783, "slow": 0.4367}


def results(curves: dict, **settings) -> dict:
    base = {"scenario": "new_site", "style": "fat_dark", "seeds": 1, "pool_subjects": 8, "pool_slices": 10,
            "test_subjects": 4, "rounds": 1, "n": 4, "switch": 12, "round_settings": {"lr": 2e-4}, "seconds": 10.0,
            "machine": {"cpu": "x"}}
    return {**base, **settings, "curves": curves, "picks": {s: [] for s in curves},
            "pick_profiles": {s: {} for s in curves}, "round_status": {s: [] for s in curves}}


def test_a_new_strategy_joins_earlier_results_only_when_random_reproduces_them():
    random_runs = [[(0, 0.2), (4, 0.41)]]
    earlier = results({"random": random_runs, "uncertain_slices": [[(0, 0.2), (4, 0.45)]]})
    res = merged(results({"random": [[(0, 0.2), (4, 0.4100000001)]], "class_stratified": [[(0, 0.2), (4, 0.5)]]}),
                 earlier)
    assert list(res["curves"]) == ["random", "class_stratified", "uncertain_slices"]
    assert res["merged"]["strategies"] == ["uncertain_slices"] and res["seconds"] == 20.0
    with pytest.raises(ValueError, match="random's curves differ"):
        merged(results({"random": [[(0, 0.2), (4, 0.42)]]}), earlier)
    with pytest.raises(ValueError, match="settings differ"):
        merged(results({"random": random_runs}, rounds=2), earlier)
