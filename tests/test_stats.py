"""lmexp.tools.stats against scipy/numpy computed directly, and the verdicts of claims."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from lmexp.tools.stats import CONTRADICTED, HOLDS, NOT_SIGNIFICANT, compare_groups, judge

ARM = {1: 2.31, 2: 2.35, 3: 2.29, 4: 2.40, 5: 2.33}
BASE = {1: 2.41, 2: 2.43, 3: 2.44, 4: 2.47, 5: 2.41}


def test_same_seeds_are_paired_and_match_scipy():
    c = compare_groups(ARM, BASE, lower_is_better=True)
    a, b = np.array(list(ARM.values())), np.array(list(BASE.values()))
    direct = sps.ttest_rel(a, b)
    d = a - b
    half = sps.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    assert c.test == "paired t" and c.n == c.n_baseline == 5
    assert c.p == pytest.approx(direct.pvalue, rel=1e-12)
    assert c.diff == pytest.approx(d.mean()) and c.mean == pytest.approx(a.mean()) and c.std == pytest.approx(a.std(ddof=1))
    assert (c.ci_low, c.ci_high) == pytest.approx((d.mean() - half, d.mean() + half), rel=1e-10)
    assert c.effect_size == pytest.approx(d.mean() / d.std(ddof=1))
    assert c.outcome(0.05) == "better" and compare_groups(ARM, BASE, lower_is_better=False).outcome(0.05) == "worse"


def test_pairing_follows_the_seeds_not_the_order():
    shuffled = dict(reversed(list(ARM.items())))
    assert compare_groups(shuffled, BASE, True).p == pytest.approx(compare_groups(ARM, BASE, True).p, rel=1e-12)


def test_other_seeds_use_welch_and_match_scipy():
    other = {seed + 10: value for seed, value in BASE.items()}
    del other[11]
    c = compare_groups(ARM, other, lower_is_better=True, confidence=0.9)
    a, b = list(ARM.values()), list(other.values())
    direct = sps.ttest_ind(a, b, equal_var=False)
    low, high = direct.confidence_interval(0.9)
    assert c.test == "Welch t" and (c.n, c.n_baseline) == (5, 4)
    assert c.p == pytest.approx(direct.pvalue, rel=1e-12)
    assert (c.ci_low, c.ci_high) == pytest.approx((low, high), rel=1e-12)
    # Welch-Satterthwaite interval by hand, as a second check of what scipy computes.
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = sps.t.ppf(0.95, dof) * np.sqrt(va + vb)
    assert (c.ci_low, c.ci_high) == pytest.approx((c.diff - half, c.diff + half), rel=1e-10)
    assert c.effect_size == pytest.approx(c.diff / np.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2))


def test_identical_runs_and_single_runs():
    same = compare_groups(BASE, dict(BASE), lower_is_better=True)
    assert (same.p, same.ci_low, same.ci_high, same.diff) == (1.0, 0.0, 0.0, 0.0) and same.outcome(0.05) == "n.s."
    single = compare_groups({1: 2.0}, {1: 2.5}, lower_is_better=True)
    assert single.p is None and single.ci_low is None and single.outcome(0.05) == "n.s."


def test_judge_is_direction_aware_and_splits_alpha_over_arms():
    def entry(p, diff):
        return {"p": p, "diff": diff}

    assert judge([entry(0.01, -0.1)], expect_lower=True, alpha=0.05) == HOLDS
    assert judge([entry(0.01, -0.1)], expect_lower=False, alpha=0.05) == CONTRADICTED
    assert judge([entry(0.2, -0.1)], expect_lower=True, alpha=0.05) == NOT_SIGNIFICANT
    assert judge([entry(None, -0.1)], expect_lower=True, alpha=0.05) == NOT_SIGNIFICANT
    # Two arms: each must pass at 0.025 (Bonferroni).
    assert judge([entry(0.01, -0.1), entry(0.03, -0.1)], expect_lower=True, alpha=0.05) == NOT_SIGNIFICANT
    assert judge([entry(0.01, -0.1), entry(0.02, -0.1)], expect_lower=True, alpha=0.05) == HOLDS
    assert judge([entry(0.01, -0.1), entry(0.001, 0.1)], expect_lower=True, alpha=0.05) == CONTRADICTED
