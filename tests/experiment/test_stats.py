"""The sweep's statistics against scipy, hand-computed cases and their edges."""

import math

import numpy as np
import pytest
from scipy import stats as sp

from linklm.experiment.stats import (
    compare,
    differences,
    fixed_sequence,
    holm,
    paired_t,
    rule_text,
    t_interval,
    union_p,
    wilcoxon_greater,
)

RNG = np.random.default_rng(0)
BASE = 0.70 + 0.01 * RNG.standard_normal(10)
ARM = BASE + 0.02 + 0.01 * RNG.standard_normal(10)


def test_paired_t_is_scipys_paired_test():
    gain, p = paired_t(ARM, BASE)
    assert gain == pytest.approx(np.mean(ARM - BASE))
    assert p == pytest.approx(sp.ttest_rel(ARM, BASE, alternative="greater").pvalue)
    assert paired_t(ARM, BASE, "two-sided")[1] == pytest.approx(sp.ttest_rel(ARM, BASE).pvalue)
    # the other direction of a one-sided test
    assert paired_t(BASE, ARM)[1] == pytest.approx(1 - p)


def test_paired_t_by_hand():
    # differences 1, 2, 3: mean 2, sd 1, t = 2 * sqrt(3) on 2 degrees of freedom
    gain, p = paired_t([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert gain == 2.0
    t = 2 * math.sqrt(3)
    # t on 2 df has the closed-form tail 1/2 - t / (2 sqrt(t^2 + 2))
    assert p == pytest.approx(0.5 - t / (2 * math.sqrt(t * t + 2)))


def test_paired_t_edges():
    assert paired_t([0.8], [0.7]) == (pytest.approx(0.1), None)  # one seed: nothing to test
    assert paired_t(BASE + 0.01, BASE) == (pytest.approx(0.01), 0.0)  # constant gain: no spread
    assert paired_t(BASE - 0.01, BASE)[1] == 1.0  # a constant loss is never a gain
    assert paired_t(BASE, BASE)[1] == 1.0  # no difference at all
    assert paired_t(BASE - 0.01, BASE, "two-sided")[1] == 0.0
    assert paired_t(BASE, BASE, "two-sided")[1] == 1.0
    with pytest.raises(ValueError):
        differences([1.0, 2.0], [1.0])


def test_a_symmetric_difference_is_exactly_undecided():
    # differences -0.02, -0.01, 0.01, 0.02: t = 0, so the one-sided p is 1/2
    base = np.array([0.7, 0.7, 0.7, 0.7])
    arm = base + np.array([-0.02, -0.01, 0.01, 0.02])
    assert paired_t(arm, base) == (pytest.approx(0.0, abs=1e-15), pytest.approx(0.5))
    assert paired_t(arm, base, "two-sided")[1] == pytest.approx(1.0)


def test_t_interval_is_scipys():
    diff = ARM - BASE
    low, high = t_interval(diff)
    ref = sp.t.interval(0.95, len(diff) - 1, loc=diff.mean(), scale=sp.sem(diff))
    assert (low, high) == pytest.approx(ref)
    # by hand: 1, 2, 3 -> 2 +- t(0.975, 2) / sqrt(3), t(0.975, 2) = 4.302653
    assert t_interval([1.0, 2.0, 3.0]) == pytest.approx([2 - 4.302653 / math.sqrt(3), 2 + 4.302653 / math.sqrt(3)])
    assert t_interval([0.5, 0.5, 0.5]) == [0.5, 0.5]  # no spread: the mean itself
    assert t_interval([0.5]) is None
    wide, narrow = t_interval(diff, 0.99), t_interval(diff, 0.5)
    assert wide[0] < low < narrow[0] < narrow[1] < high < wide[1]


def test_wilcoxon_is_scipys_and_exact_by_hand():
    assert wilcoxon_greater(ARM, BASE) == pytest.approx(sp.wilcoxon(ARM - BASE, alternative="greater").pvalue)
    # every one of n differences positive (distinct sizes): the exact p is 1 / 2**n
    assert wilcoxon_greater([0.9, 0.8, 0.75, 0.71, 0.705], [0.7] * 5) == pytest.approx(1 / 32)
    assert wilcoxon_greater(np.arange(10) + 1.5, np.zeros(10)) == pytest.approx(1 / 1024)
    # every one negative: the largest p
    assert wilcoxon_greater([0.1, 0.2, 0.3], [0.5, 0.6, 0.8]) == pytest.approx(1.0)
    assert wilcoxon_greater(BASE, BASE) == 1.0  # all differences zero
    assert wilcoxon_greater([0.8], [0.7]) is None


def test_compare_bundles_gain_interval_and_both_tests():
    out = compare(ARM, BASE)
    assert out["n"] == 10 and out["gain"] == pytest.approx(np.mean(ARM - BASE))
    assert out["ci95"][0] <= out["gain"] <= out["ci95"][1]
    assert out["p"] == paired_t(ARM, BASE)[1] and out["p_wilcoxon"] == wilcoxon_greater(ARM, BASE)
    # a 95 % interval above zero is a two-sided p below 0.05, and a one-sided one below 0.025
    two = compare(ARM, BASE, "two-sided")
    assert "p_wilcoxon" not in two and (two["ci95"][0] > 0) == (two["p"] < 0.05)
    assert (out["ci95"][0] > 0) == (out["p"] < 0.025)
    single = compare([0.8], [0.7])
    assert single["ci95"] is None and single["p"] is None and single["p_wilcoxon"] is None


def test_holm_matches_the_textbook():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1, and monotone
    assert holm([]) == []


def test_union_p_is_the_largest_and_needs_every_component():
    assert union_p([0.01, 0.2, 0.03]) == 0.2
    assert union_p([0.01, None]) is None
    assert union_p([]) is None


def test_fixed_sequence_walks_down_from_the_largest_dimension():
    assert fixed_sequence({2: 0.01, 8: 0.01, 32: 0.01}, 0.025) == (2, None)
    assert fixed_sequence({32: 0.01, 2: 0.01, 8: 0.2}, 0.025) == (32, 8)  # unsorted input; 8 stops it
    assert fixed_sequence({2: 0.01, 8: 0.01, 32: 0.3}, 0.025) == (None, 32)  # 2 and 8 are never asked
    assert fixed_sequence({2: 0.001, 8: None}, 0.025) == (None, 8)  # an untested d never passes
    assert fixed_sequence({2: 0.02, 8: 0.02}, 0.025) == (2, None)
    assert fixed_sequence({2: 0.02, 8: 0.02}, 0.01) == (None, 8)  # the level is the arm's share of alpha
    assert fixed_sequence({16: 0.025}, 0.025) == (None, 16)  # p must be below the level
    assert fixed_sequence({}, 0.025) == (None, None)


def test_rule_text_names_the_level_and_the_controls():
    text = rule_text(["prompt", "embedding_frozen"], ["control_degree", "control_shuffled"])
    assert "alpha/2 = 0.025" in text and "control_shuffled" in text and "largest down" in text
    assert "control_degree at every d" in text
    alone = rule_text(["prompt"], [])
    assert "alpha/1 = 0.05" in alone and "beats each of vanilla in" in alone and "control" not in alone
