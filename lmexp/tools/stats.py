"""Is a group of seeded runs different from a baseline group? Statistics from scipy.stats.

`compare_groups` gives the difference of the means (group − baseline) with its confidence interval,
a two-sided p-value and an effect size:

- **paired t-test** (`scipy.stats.ttest_rel`) when both groups ran the same seeds (two or more):
  run i of one group and run i of the other share their seed, hence their initialisation and data
  order, so the per-seed differences are what varies; effect size Cohen's d_z = mean / sd of the
  differences;
- **Welch's t-test** (`scipy.stats.ttest_ind(equal_var=False)`) otherwise; effect size Cohen's d =
  difference / sqrt((s1² + s2²) / 2).

The interval is the t-interval of the same test (`TtestResult.confidence_interval`). One
convention is ours: when every paired difference is exactly 0 (identical runs) scipy returns NaN;
that is reported as p = 1 with the interval [0, 0] — no evidence of any difference.

Beside the t-interval, a bootstrap interval of the same difference (`scipy.stats.bootstrap`, BCa,
seeded): it assumes no normal distribution of the runs' values, at the price of being unreliable for a
handful of seeds.

How many seeds: `detectable_difference` is the smallest true difference the test would find with
probability `power` (0.8) at its n, alpha and the measured spread — the exact power of the t-test
from the noncentral t distribution (`scipy.stats.nct`), solved for the difference — and
`seeds_needed` is the smallest n at which a given difference (a pilot's) reaches that power.

`judge` turns comparisons into a claim's verdict, the same code for `lmexp compare --baseline`
and `lmexp reproduce <claim>`: HOLDS when every arm differs from the baseline significantly in the
expected direction, CONTRADICTED when any differs significantly the other way, otherwise NOT
SIGNIFICANT. With more than one arm against the baseline, alpha is split among them (Bonferroni).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, stats

POWER = 0.8  # the power the seeds are planned for
HOLDS, NOT_SIGNIFICANT, CONTRADICTED = "HOLDS", "NOT SIGNIFICANT", "CONTRADICTED"


@dataclass
class Comparison:
    n: int
    mean: float
    std: float | None  # sample std (ddof=1); None for one run
    n_baseline: int
    baseline_mean: float
    baseline_std: float | None
    diff: float  # mean(group) − mean(baseline)
    ci_low: float | None
    ci_high: float | None
    confidence: float
    p: float | None  # two-sided; None when a group has fewer than two runs
    effect_size: float | None  # Cohen's d (paired: d_z)
    test: str  # "paired t" | "Welch t" | "none (n < 2)"
    lower_is_better: bool
    se: float | None = None  # the standard error of diff that the test divides by
    df: float | None = None  # the test's degrees of freedom
    boot_low: float | None = None  # bootstrap interval of diff (BCa) at `confidence`
    boot_high: float | None = None

    @property
    def lower(self) -> bool:
        return self.diff < 0

    def outcome(self, alpha: float) -> str:
        """better / worse (significant at alpha, direction-aware) or n.s."""
        if self.p is None or not self.p < alpha:
            return "n.s."
        return "better" if self.lower == self.lower_is_better else "worse"

    def as_dict(self) -> dict:
        return asdict(self)


def sample_std(values) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def compare_groups(group: dict, baseline: dict, lower_is_better: bool, confidence: float = 0.95) -> Comparison:
    """`group` and `baseline` map each run's seed to its value of one metric."""
    a, b = list(group.values()), list(baseline.values())
    paired = len(a) > 1 and set(group) == set(baseline)
    common = dict(n=len(a), mean=float(np.mean(a)), std=sample_std(a), n_baseline=len(b),
                  baseline_mean=float(np.mean(b)), baseline_std=sample_std(b),
                  diff=float(np.mean(a) - np.mean(b)), confidence=confidence, lower_is_better=lower_is_better)
    if paired:
        seeds = sorted(group)
        x, y = np.array([group[s] for s in seeds], float), np.array([baseline[s] for s in seeds], float)
        d = x - y
        if not d.any():  # identical runs: scipy's t is 0/0
            return Comparison(**common, ci_low=0.0, ci_high=0.0, p=1.0, effect_size=0.0, test="paired t", se=0.0,
                              df=len(d) - 1.0, boot_low=0.0, boot_high=0.0)
        result = stats.ttest_rel(x, y)
        sd = np.std(d, ddof=1)
        effect = float(np.mean(d) / sd) if sd > 0 else math.copysign(math.inf, np.mean(d))
        test, se, samples = "paired t", float(sd / math.sqrt(len(d))), (d,)
    elif len(a) > 1 and len(b) > 1:
        result = stats.ttest_ind(a, b, equal_var=False)
        pooled = math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)
        effect = common["diff"] / pooled if pooled > 0 else math.copysign(math.inf, common["diff"])
        test, se = "Welch t", math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))
        samples = (np.asarray(a, float), np.asarray(b, float))
    else:
        return Comparison(**common, ci_low=None, ci_high=None, p=None, effect_size=None, test="none (n < 2)")
    interval = result.confidence_interval(confidence)
    boot_low, boot_high = bootstrap_interval(samples, confidence)
    return Comparison(**common, ci_low=float(interval.low), ci_high=float(interval.high),
                      p=float(result.pvalue), effect_size=effect, test=test, se=se, df=float(result.df),
                      boot_low=boot_low, boot_high=boot_high)


def _difference_of_means(*samples, axis=-1):
    return np.mean(samples[0], axis=axis) - (np.mean(samples[1], axis=axis) if len(samples) > 1 else 0.0)


def bootstrap_interval(samples: tuple, confidence: float) -> tuple[float | None, float | None]:
    """The BCa bootstrap interval of the mean of paired differences `(d,)`, or of the difference of the
    means of `(a, b)`; (None, None) where the data cannot give one (all values equal)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate resamples: an interval of NaN, reported as None
        result = stats.bootstrap(samples, _difference_of_means, confidence_level=confidence, n_resamples=9999,
                                 method="BCa", rng=np.random.default_rng(0))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return (None, None) if math.isnan(low) or math.isnan(high) else (low, high)


def power_of_t_test(diff: float, se: float, df: float, alpha: float) -> float:
    """The probability that a two-sided t-test at `alpha` rejects when the true difference is `diff`
    and the difference of the means has standard error `se` (noncentral t with noncentrality diff / se)."""
    return float(_power(abs(diff) / se, df, alpha))


def _power(shift, df, alpha):
    """Two-sided t-test's power at noncentrality `shift` (arrays welcome). scipy's nct returns NaN
    deep in the far tail at few degrees of freedom; that tail is 0 there."""
    critical = stats.t.ppf(1 - alpha / 2, df)
    return stats.nct.sf(critical, df, shift) + np.nan_to_num(stats.nct.cdf(-critical, df, shift), nan=0.0)


def detectable_difference(se: float | None, df: float | None, alpha: float, power: float = POWER) -> float | None:
    """The smallest true difference found with probability `power` at this standard error, degrees
    of freedom and alpha (None without a spread: fewer than two runs)."""
    if se is None or df is None or not df > 0:
        return None
    if se == 0:
        return 0.0
    high = se * (stats.t.ppf(1 - alpha / 2, df) + stats.norm.ppf(power))  # the normal approximation, below
    while power_of_t_test(high, se, df, alpha) < power:
        high *= 1.5
    return float(optimize.brentq(lambda diff: power_of_t_test(diff, se, df, alpha) - power, 0.0, high, xtol=se * 1e-9))


def projected_spread(comparison: dict, n):
    """The standard error and degrees of freedom the comparison's test would have with `n` seeds per
    arm (a number or an array) and the spread it measured (`Comparison.as_dict()`); None without one."""
    if comparison.get("se") is None or comparison["n"] < 2:
        return None
    n = np.asarray(n, dtype=float)
    if comparison["test"] == "paired t":
        sd = comparison["se"] * math.sqrt(comparison["n"])  # of the per-seed differences
        return sd / np.sqrt(n), n - 1
    var_a, var_b = comparison["std"] ** 2, comparison["baseline_std"] ** 2  # Welch: n in both arms
    return np.sqrt((var_a + var_b) / n), (var_a + var_b) ** 2 / ((var_a ** 2 + var_b ** 2) / (n - 1))


def seeds_needed(comparison: dict, diff: float, alpha: float, power: float = POWER, most: int = 10_000) -> int | None:
    """The smallest number of seeds per arm at which the comparison's test, with the spread measured
    in `comparison` (a pilot's), finds a true difference `diff` with probability `power`; None when
    even `most` seeds would not, or nothing was measured."""
    n = np.arange(2, most + 1)
    spread = projected_spread(comparison, n)
    if spread is None or not diff:
        return None
    se, df = spread
    if not se.any():  # no spread at all: two seeds show any difference
        return 2
    reached = _power(abs(diff) / se, df, alpha) >= power
    return int(n[np.argmax(reached)]) if reached.any() else None


def judge(comparisons: list[dict], expect_lower: bool, alpha: float) -> str:
    """The verdict of a claim that every compared arm is lower (or higher) than the baseline, from
    comparisons as `Comparison.as_dict()` gives them (keys `p`, `diff`)."""
    level = alpha / max(1, len(comparisons))  # Bonferroni over the arms
    significant = [c for c in comparisons if c["p"] is not None and c["p"] < level]
    if any((c["diff"] < 0) != expect_lower for c in significant):
        return CONTRADICTED
    if comparisons and len(significant) == len(comparisons):
        return HOLDS
    return NOT_SIGNIFICANT
