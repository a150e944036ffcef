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

`judge` turns comparisons into a claim's verdict, the same code for `lmexp compare --baseline`
and `lmexp reproduce <claim>`: HOLDS when every arm differs from the baseline significantly in the
expected direction, CONTRADICTED when any differs significantly the other way, otherwise NOT
SIGNIFICANT. With more than one arm against the baseline, alpha is split among them (Bonferroni).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

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
            return Comparison(**common, ci_low=0.0, ci_high=0.0, p=1.0, effect_size=0.0, test="paired t")
        result = stats.ttest_rel(x, y)
        sd = np.std(d, ddof=1)
        effect = float(np.mean(d) / sd) if sd > 0 else math.copysign(math.inf, np.mean(d))
        test = "paired t"
    elif len(a) > 1 and len(b) > 1:
        result = stats.ttest_ind(a, b, equal_var=False)
        pooled = math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)
        effect = common["diff"] / pooled if pooled > 0 else math.copysign(math.inf, common["diff"])
        test = "Welch t"
    else:
        return Comparison(**common, ci_low=None, ci_high=None, p=None, effect_size=None, test="none (n < 2)")
    interval = result.confidence_interval(confidence)
    return Comparison(**common, ci_low=float(interval.low), ci_high=float(interval.high),
                      p=float(result.pvalue), effect_size=effect, test=test)


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
