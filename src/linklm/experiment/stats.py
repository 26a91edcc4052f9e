"""The sweep's statistics: pure functions of per-seed numbers (scipy), and the rule that reads them.

Every arm of a sweep runs with the same seeds on the same test pairs, so each comparison is over
per-seed differences (arm minus reference, same seed): it covers the variance of training, not only
that of the test pairs. The primary endpoint is test AUC; accuracy (at the val-chosen threshold) is
secondary and never changes the answer.

The rule (`rule_text`, also written to sweep.json as "rule"). With m KGE arms (prompt and
embedding_frozen: m = 2), each arm is tested at level alpha / m (Bonferroni over the arms):

1. At dimension d the arm must beat, in test AUC, vanilla and every control of the same d
   (control_degree, independent of d, counts at every d): one one-sided paired t-test over the seeds
   per comparison. d passes only if every one of them has p < alpha / m. This is an
   intersection-union test (its p is the largest of theirs), which needs no correction within d.
2. The dimensions that fit are tested in a fixed sequence from the largest down; the sequence stops
   at the first d that fails. KGEs pay off from the smallest d that passed: that d and every larger
   fitting d passed. If the largest fitting d fails, they pay off at no tested dimension.

A fixed sequence holds the familywise error at alpha / m per arm with no correction over dimensions,
and Bonferroni holds it at alpha over the arms. The order is fixed before any data: from the largest
d down, because a larger d carries at least what a smaller one does, and "from which d on" is "down
to which d does it still pay off". (The closed-testing alternative, testing every d and keeping
those whose intersections all reject, was not chosen: with one-sided nested questions it answers
the same "from d on" in the common case and is harder to read.)

Secondary, accuracy: the same intersection-union p per (arm, d), Holm over every (arm, d) that fits.
Beside every t p, a one-sided Wilcoxon signed-rank p (scipy) checks robustness to non-normal
differences; its smallest value is 1 / 2**n (1/1024 with 10 seeds, 1/32 with 5). Gains carry 95 %
t-intervals over the seeds. The contrasts of each d against the next smaller d of the same arm
are descriptive (mean difference, 95 % t-interval, two-sided paired t p) and not part of the rule.

Edge cases: with fewer than two seeds no p (None) and no interval; a None p never passes. With no
spread in the differences t is infinite: p = 0 for a gain, 1 for none or a loss (two-sided: 0 for
any nonzero difference), and the interval is the mean itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ALPHA = 0.05
LEVEL = 0.95  # of the t-intervals
_NO_SPREAD = 1e-12  # per-seed differences closer than this are one value


def differences(values, base) -> np.ndarray:
    """Per-seed differences values - base (paired by position)."""
    a, b = np.asarray(values, np.float64).reshape(-1), np.asarray(base, np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {a.shape[0]} and {b.shape[0]}")
    return a - b


def t_interval(diff, level: float = LEVEL) -> list[float] | None:
    """The t-interval of the mean of `diff` at `level`; None with fewer than two values."""
    from scipy import stats

    diff = np.asarray(diff, np.float64).reshape(-1)
    if len(diff) < 2:
        return None
    mean, sem = float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff)))
    half = float(stats.t.ppf(0.5 + level / 2, len(diff) - 1)) * sem
    return [mean - half, mean + half]


def paired_t(values, base, alternative: str = "greater") -> tuple[float, float | None]:
    """Mean per-seed gain of `values` over `base` and the paired t-test's p ("greater": one-sided,
    that values exceed base; "two-sided"). p is None with fewer than two seeds."""
    from scipy import stats

    diff = differences(values, base)
    gain = float(diff.mean()) if len(diff) else float("nan")
    if len(diff) < 2:
        return gain, None
    if np.ptp(diff) <= _NO_SPREAD:  # t is infinite (or undefined at zero)
        hit = gain > 0 if alternative == "greater" else gain != 0
        return gain, 0.0 if hit else 1.0
    return gain, float(stats.ttest_1samp(diff, 0.0, alternative=alternative).pvalue)


def wilcoxon_greater(values, base) -> float | None:
    """One-sided Wilcoxon signed-rank p that `values` exceed `base` (paired); zero differences are
    dropped (scipy's default), all of them zero gives 1. None with fewer than two seeds."""
    from scipy import stats

    diff = differences(values, base)
    if len(diff) < 2:
        return None
    if not np.any(np.abs(diff) > _NO_SPREAD):
        return 1.0
    return float(stats.wilcoxon(diff, alternative="greater").pvalue)


def compare(values, base, alternative: str = "greater") -> dict[str, Any]:
    """The paired comparison of `values` with `base` over seeds: gain (mean difference), its 95 %
    t-interval, the t-test's p and (one-sided only) the Wilcoxon p."""
    diff = differences(values, base)
    gain, p = paired_t(values, base, alternative)
    out: dict[str, Any] = {"gain": gain, "ci95": t_interval(diff), "p": p, "n": len(diff)}
    if alternative == "greater":
        out["p_wilcoxon"] = wilcoxon_greater(values, base)
    return out


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given."""
    order = np.argsort(pvalues, kind="stable")
    m = len(pvalues)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted.tolist()


def union_p(pvalues: list[float | None]) -> float | None:
    """The intersection-union test's p: the largest of the components' (None if any is None or
    there are none): it rejects only where every component does."""
    if not pvalues or any(p is None for p in pvalues):
        return None
    return float(max(pvalues))


def fixed_sequence(tests: dict[int, float | None], level: float) -> tuple[int | None, int | None]:
    """The fixed sequence over {d: p} from the largest d down, each at `level`: (the smallest d
    reached such that it and every larger d passed, or None; the d where the sequence stopped, or
    None if every d passed)."""
    answer = None
    for d in sorted(tests, reverse=True):
        p = tests[d]
        if p is None or p >= level:
            return answer, d
        answer = d
    return answer, None


def rule_text(arms: list[str], controls: list[str], alpha: float = ALPHA) -> str:
    """The rule of this module's docstring, for this sweep's arms and controls."""
    level = alpha / max(1, len(arms))
    against = ", ".join(["vanilla", *controls])
    where = " (control_degree at every d, the others of the same d)" if "control_degree" in controls else ""
    if controls and where == "":
        where = " (of the same d)"
    return (
        f"Primary endpoint test AUC. For each KGE arm ({', '.join(arms)}), at alpha/{len(arms)} = {level:.4g} "
        f"(Bonferroni over the arms): the fitting dimensions are tested in a fixed sequence from the largest down; "
        f"d passes if the arm's test AUC beats each of {against}{where} in a one-sided paired t-test over seeds, "
        f"each at p < {level:.4g} (an intersection-union test); "
        "the sequence stops at the first d that fails, and KGEs pay off from the smallest d that passed. "
        "Secondary: accuracy, the same per-d test with Holm over every (arm, d). Wilcoxon signed-rank p's are a "
        "robustness check; contrasts of each d with the next smaller d are descriptive (two-sided)."
    )
