"""lmexp.tools.stats against scipy/numpy computed directly, and the verdicts of claims."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from lmexp.tools.stats import (CONTRADICTED, HOLDS, NOT_SIGNIFICANT, bootstrap_interval, compare_groups,
                               detectable_difference, judge, power_of_t_test, seeds_needed)

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


def test_detectable_difference_has_the_power_it_promises():
    """Known answers: the power of the t-test written out as an integral over the chi-square of the
    variance (no noncentral t) is 0.8 at the detectable difference, and 0.8031 at d = 1 with 10 pairs
    (G*Power's actual power for that design); at large n the normal closed form (z_0.975 + z_0.8) se;
    and at n=5 a simulation of 40000 paired experiments with that true difference rejects 80% of the time."""
    from scipy import integrate

    def power(d, n, alpha=0.05):  # P(|Z + d sqrt(n)| > t_c sqrt(V / df)), V ~ chi2(df)
        df, critical = n - 1, sps.t.ppf(1 - alpha / 2, n - 1)
        def given(v):
            edge = critical * np.sqrt(v / df)
            return (sps.norm.sf(edge - d * np.sqrt(n)) + sps.norm.cdf(-edge - d * np.sqrt(n))) * sps.chi2.pdf(v, df)
        return integrate.quad(given, 0, np.inf)[0]

    mdd = detectable_difference(1 / np.sqrt(10), 9, 0.05)  # in units of the sd of the differences
    assert power(mdd, 10) == pytest.approx(0.8, abs=1e-7) and 0.99 < mdd < 1
    assert power(1.0, 10) == pytest.approx(0.8031, abs=1e-4) == power_of_t_test(1.0, 1 / np.sqrt(10), 9, 0.05)
    se = 1 / np.sqrt(2000)
    assert detectable_difference(se, 1999, 0.05) == pytest.approx((sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * se,
                                                                 rel=2e-3)
    sd, n = 0.02, 5
    mdd = detectable_difference(sd / np.sqrt(n), n - 1, 0.05)
    assert power_of_t_test(mdd, sd / np.sqrt(n), n - 1, 0.05) == pytest.approx(0.8, abs=1e-6)
    diffs = np.random.default_rng(0).normal(mdd, sd, size=(40000, n))
    rejected = sps.ttest_1samp(diffs, 0.0, axis=1).pvalue < 0.05
    assert rejected.mean() == pytest.approx(0.8, abs=0.01)
    assert detectable_difference(None, None, 0.05) is None


def test_seeds_needed_inverts_the_detectable_difference():
    """d = 1 needs 10 pairs (n = 9 falls short: its detectable d is above 1), for paired and, with two
    equal spreads, Welch arms need 17 seeds each for d = 1 (Cohen's tables)."""
    pilot = compare_groups(ARM, BASE, lower_is_better=True).as_dict()
    sd = pilot["se"] * np.sqrt(pilot["n"])
    assert seeds_needed(pilot, diff=sd, alpha=0.05) == 10
    assert detectable_difference(sd / 3, 8, 0.05) > sd > detectable_difference(sd / np.sqrt(10), 9, 0.05)
    for n in (3, 8, 20):
        mdd = detectable_difference(sd / np.sqrt(n), n - 1, 0.05)
        assert seeds_needed(pilot, diff=mdd * 1.0001, alpha=0.05) == n
    welch = compare_groups(ARM, {s + 10: v for s, v in BASE.items()}, lower_is_better=True).as_dict()
    assert welch["test"] == "Welch t"
    spread = np.sqrt((welch["std"] ** 2 + welch["baseline_std"] ** 2) / 2)  # Cohen's d = 1: 17 per arm
    assert seeds_needed(welch, diff=spread, alpha=0.05) in (17, 18)  # 18 where the spreads differ (Welch df)
    assert seeds_needed(pilot, diff=1e-9, alpha=0.05) is None  # not within 10000 seeds
    assert seeds_needed(compare_groups({1: 2.0}, {1: 2.5}, True).as_dict(), diff=0.1, alpha=0.05) is None


def test_bootstrap_interval_beside_the_t_interval():
    """For 400 normal values the bootstrap interval of the mean is the t-interval within a few
    percent; for equal values there is none."""
    values = np.random.default_rng(1).normal(0.3, 1.0, 400)
    low, high = bootstrap_interval((values,), 0.95)
    t_low, t_high = sps.t.interval(0.95, 399, loc=values.mean(), scale=sps.sem(values))
    assert low == pytest.approx(t_low, abs=0.02) and high == pytest.approx(t_high, abs=0.02)
    assert bootstrap_interval((np.ones(5),), 0.95) == (None, None)
    c = compare_groups(ARM, BASE, lower_is_better=True)
    assert c.boot_low < c.diff < c.boot_high and c.boot_high < 0  # every seed is lower: so is the interval

