"""`lmexp rate --report SESSION`: who won, by how much, whether it is more than chance, and whether
the raters agree.

For each rater and pooled: A wins, B wins, ties and "both bad"; A's win rate over the decided pairs
(A or B won) with its 95% Wilson interval and the two-sided exact binomial p-value against 50%
(scipy.stats.binomtest). The pooled numbers count every rating as one trial: when several raters
rate the same items those trials are not independent, so read the pooled interval as optimistic
and look at the per-rater rows and the agreement. Agreement (statsmodels): Cohen's kappa for each
pair of raters over the items both rated, Fleiss' kappa over the items every rater rated (three
raters or more); over the four outcomes A / B / tie / both bad.

When a rater answered an item twice, the last answer counts.
"""

from __future__ import annotations

import json
import math
from itertools import combinations
from pathlib import Path

from lmexp.errors import ConfigError, cannot_write
from lmexp.tools.rating.session import OUTCOMES, read_json, read_ratings

ALPHA = 0.05  # the verdict's significance level; the intervals are 95%


def latest_ratings(folder: Path) -> dict[tuple[str, int], dict]:
    """(rater, item) → that rater's last rating of the item."""
    return {(row["rater"], row["item"]): row for row in read_ratings(folder)}


def tally(outcomes: list[str]) -> dict:
    """Counts, A's win rate over decided pairs, its 95% Wilson interval and the p-value against 50%."""
    from scipy.stats import binomtest

    counts = {outcome: outcomes.count(outcome) for outcome in OUTCOMES}
    wins, decided = counts["A"], counts["A"] + counts["B"]
    row = {"ratings": len(outcomes), "A_wins": wins, "B_wins": counts["B"], "ties": counts["tie"],
           "both_bad": counts["both_bad"], "decided": decided,
           "A_win_rate": None, "ci95": None, "p_value": None}
    if decided:
        test = binomtest(wins, decided, 0.5)
        interval = test.proportion_ci(0.95, method="wilson")
        row.update(A_win_rate=wins / decided, ci95=[interval.low, interval.high], p_value=test.pvalue)
    return row


def agreement(latest: dict[tuple[str, int], dict]) -> dict:
    """Cohen's kappa per pair of raters (≥2 shared items); Fleiss' kappa over the items all raters
    rated (≥3 raters, ≥2 such items). A kappa that is undefined (every answer the same) is None."""
    import numpy as np
    from statsmodels.stats.inter_rater import aggregate_raters, cohens_kappa, fleiss_kappa, to_table

    code = {outcome: n for n, outcome in enumerate(OUTCOMES)}
    items: dict[str, set[int]] = {}
    for rater, item in latest:
        items.setdefault(rater, set()).add(item)
    raters = sorted(items)

    def answers(group: list[str], shared: list[int]) -> "np.ndarray":
        return np.array([[code[latest[rater, item]["outcome"]] for rater in group] for item in shared])

    def defined(kappa: float) -> float | None:
        return None if math.isnan(kappa) else float(kappa)

    pairs = []
    for first, second in combinations(raters, 2):
        shared = sorted(items[first] & items[second])
        if len(shared) >= 2:
            table = to_table(answers([first, second], shared), bins=len(OUTCOMES))[0]
            with np.errstate(divide="ignore", invalid="ignore"):
                kappa = defined(cohens_kappa(table, return_results=False))
            pairs.append({"raters": [first, second], "items": len(shared), "cohen_kappa": kappa})
    fleiss = None
    shared = sorted(set.intersection(*items.values())) if len(raters) >= 3 else []
    if len(shared) >= 2:
        counts = aggregate_raters(answers(raters, shared), n_cat=len(OUTCOMES))[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            fleiss = {"raters": raters, "items": len(shared), "fleiss_kappa": defined(fleiss_kappa(counts))}
    return {"pairs": pairs, "fleiss": fleiss}


def verdict(pooled: dict, names: dict[str, str]) -> str:
    """The pooled result in words."""
    n = pooled["decided"]
    if n == 0:
        return f"no decided pairs yet ({pooled['ratings']} ratings, none preferring A or B)"
    low, high = pooled["ci95"]
    numbers = (f"A won {pooled['A_wins']} of {n} decided pairs, win rate {pooled['A_win_rate']:.2f}, "
               f"95% CI {low:.2f}-{high:.2f}, p={pooled['p_value']:.3g}")
    if pooled["p_value"] < ALPHA:
        winner = "A" if pooled["A_wins"] * 2 > n else "B"
        return f"{winner} ({names[winner]}) preferred: {numbers}"
    return f"no detectable preference at n={n} decided pairs: {numbers}"


def summarize(folder: str | Path) -> dict:
    """The report as a dict (what rating.json holds)."""
    folder = Path(folder)
    items = read_json(folder / "items.json", "list of items")
    key = read_json(folder / "key.json", "sealed key")
    latest = latest_ratings(folder)
    if not latest:
        raise ConfigError(f"{folder}: no ratings yet (ratings.jsonl is missing or empty); serve the session with "
                          f"`lmexp rate --serve {folder}` and rate first")
    raters = sorted({rater for rater, _ in latest})
    names = {label: key[label]["name"] for label in ("A", "B")}
    pooled = tally([row["outcome"] for row in latest.values()])
    return {
        "session": str(folder), "items": len(items), "A": key["A"], "B": key["B"], "sampling": key["sampling"],
        "raters": {r: tally([row["outcome"] for (rater, _), row in latest.items() if rater == r]) for r in raters},
        "pooled": pooled, "agreement": agreement(latest), "verdict": verdict(pooled, names),
    }


def plot(summary: dict, path: Path) -> None:
    """rating.png: per rater and pooled, the share of A wins / ties / both bad / B wins (left) and
    A's win rate over decided pairs with its 95% interval (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [*summary["raters"].items(), ("pooled", summary["pooled"])]
    labels = [f"{name} (n={row['ratings']})" for name, row in rows]
    figure, (shares, rates) = plt.subplots(1, 2, figsize=(11, 1.2 + 0.5 * len(rows)), sharey=True)
    left = [0.0] * len(rows)
    for key, label, color in [("A_wins", "A wins", "#2f6db3"), ("ties", "tie", "#b8b8b8"),
                              ("both_bad", "both bad", "#7a7a7a"), ("B_wins", "B wins", "#d9822b")]:
        widths = [row[key] / row["ratings"] for _, row in rows]
        shares.barh(labels, widths, left=left, color=color, label=label)
        left = [a + b for a, b in zip(left, widths)]
    shares.set_xlim(0, 1)
    shares.set_xlabel("share of ratings")
    shares.legend(ncol=4, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    shares.invert_yaxis()
    for y, (_, row) in enumerate(rows):
        if row["A_win_rate"] is not None:
            low, high = row["ci95"]
            rate = row["A_win_rate"]
            rates.errorbar(rate, y, xerr=[[rate - low], [high - rate]], fmt="o", color="#2f6db3", capsize=4)
    rates.axvline(0.5, color="#888", linestyle="--", linewidth=1)
    rates.set_xlim(0, 1)
    rates.set_xlabel("A's win rate over decided pairs (95% Wilson interval)")
    figure.suptitle(f"A = {summary['A']['name']}, B = {summary['B']['name']}: {summary['verdict']}", fontsize=8, wrap=True)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def log_to_wandb(summary: dict, folder: Path) -> Path:
    """An offline W&B run in the runs' group (job_type "rating"): a table of prompt / A / B / votes
    and the summary numbers. Returns the offline run's folder."""
    import wandb

    from lmexp.wandb_logging import finish_wandb

    items = read_json(folder / "items.json", "list of items")
    latest = latest_ratings(folder)
    table = wandb.Table(columns=["item", "prompt", "A", "B", "A wins", "B wins", "ties", "both bad", "comments"])
    for number, item in enumerate(items):
        rows = [row for (_, n), row in sorted(latest.items()) if n == number]
        votes = [sum(row["outcome"] == outcome for row in rows) for outcome in OUTCOMES]
        comments = " | ".join(f"{row['rater']}: {row['comment']}" for row in rows if row["comment"])
        table.add_data(number, item["prompt"], item["A"], item["B"], *votes, comments)
    where = read_json(folder / "key.json", "sealed key").get("wandb") or {}
    run = wandb.init(dir=folder, project=where.get("project") or "lmexp", group=where.get("group"),
                     job_type="rating", name=f"rate {folder.name}",
                     config={"A": summary["A"], "B": summary["B"], "sampling": summary["sampling"]},
                     settings=wandb.Settings(mode="offline", silent=True))
    offline_dir = Path(run.dir).parent
    try:
        run.log({"ratings": table})
        pooled = {f"pooled/{k}": v for k, v in summary["pooled"].items() if k != "ci95"}
        if summary["pooled"]["ci95"]:
            pooled.update({"pooled/ci95_low": summary["pooled"]["ci95"][0], "pooled/ci95_high": summary["pooled"]["ci95"][1]})
        run.summary.update({**pooled, "verdict": summary["verdict"], "raters": len(summary["raters"])})
    finally:
        finish_wandb(success=True)
    return offline_dir


def write_report(folder: str | Path) -> dict:
    """The W&B run, then rating.json and rating.png in the session folder; returns the summary."""
    folder = Path(folder)
    summary = summarize(folder)
    summary["wandb_dir"] = str(log_to_wandb(summary, folder))
    try:
        temporary = folder / ".rating.json.tmp"
        temporary.write_text(json.dumps(summary, indent=1, ensure_ascii=False))
        temporary.replace(folder / "rating.json")
        plot(summary, folder / "rating.png")
    except OSError as err:
        raise cannot_write(folder, "the rating report", err) or err
    return summary
