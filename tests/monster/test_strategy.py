"""MergeMonster's strategies on scripted scores, decisions worked by hand from its loop
(`merge-monster.py`): candidates come in ratio order, scores are signed weighted
probabilities per (phrase, context) pair, lower is better."""

from mergesmith.monster.strategy import Choice, choose

ORIG = [0.5, 0.4, -0.2]  # total 0.7


def test_cumulative_keeps_the_first_lowest_total_below_the_original():
    candidates = [[0.6, 0.2, -0.2],   # 0.6
                  [0.5, 0.3, -0.3],   # 0.5  <- lowest, first
                  [0.4, 0.4, -0.3],   # 0.5  (a tie keeps the earlier one)
                  [0.9, 0.9, 0.9]]
    assert choose("cumulative", ORIG, candidates, 0.6) == 1
    assert choose("cumulative", ORIG, [[0.5, 0.4, -0.2], [0.6, 0.4, -0.2]], 0.6) is None  # equal: no


def test_all_phrases_accepts_no_worse_and_keeps_the_last():
    candidates = [[0.5, 0.4, -0.2],   # every pair equal: passes (<=)
                  [0.1, 0.1, -0.9],   # passes, lowest total
                  [0.1, 0.5, -0.9],   # one pair worse: fails
                  [0.45, 0.4, -0.2]]  # passes: the last one passing is kept
    assert choose("all_phrases", ORIG, candidates, 0.6) == 3
    assert choose("all_phrases", ORIG, candidates[2:3], 0.6) is None


def test_quantitive_compares_the_fraction_with_the_threshold():
    one_of_three = [0.4, 0.9, 0.9]   # 1/3 improved: below 0.6 (a count rule would accept it)
    two_of_three = [0.4, 0.3, 5.0]   # 2/3 >= 0.6, although the total is far worse
    also_two = [0.49, 0.39, 0.0]
    assert choose("quantitive", ORIG, [one_of_three], 0.6) is None
    assert choose("quantitive", ORIG, [two_of_three, one_of_three], 0.6) == 0
    assert choose("quantitive", ORIG, [two_of_three, also_two, one_of_three], 0.6) == 1  # last passing
    assert choose("quantitive", [1, 1, 1, 1], [[0, 0, 1, 1]], 0.5) == 0  # 2/4 = 0.5: >=
    assert choose("quantitive", ORIG, [[0.5, 0.4, -0.2]], 0.0) == 0  # threshold 0: anything


def test_choice_tracks_best_for_the_log():
    choice = Choice("cumulative", ORIG, 0.6)
    assert choice.offer(0, [0.4, 0.4, -0.2]) and not choice.offer(1, [0.45, 0.4, -0.2])
    assert choice.index == 0 and choice.best == [0.4, 0.4, -0.2]
