"""The active-learning benchmark's summary: slices to reach random's final Dice, and budgets
where a strategy trails random by more than one sd, from the curves of every seed."""

from bench.bench_active_learning import summarise


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
