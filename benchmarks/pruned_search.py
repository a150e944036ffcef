"""An Optuna search with and without ASHA pruning, side by side, alternated round by round.

Each search is one command, as a user runs it: `lmexp-train -m` of optimizer.lr x
optimizer.weight_decay (default_optuna's space) on the claims' character-level GPT on Tiny
Shakespeare, TPE with the same seed, two trials at a time (joblib), optimizing val/loss;
`hparams_search=default_optuna hydra.sweeper.n_jobs=2` (every trial to the end) against
`hparams_search=asha` (the preset as shipped). For each: the optimizer steps of all its trials
(from their records), the command's wall time, the best val/loss of a completed trial (the
whole validation split); then pruned/unpruned ratios, and their medians over the rounds.

Goal (issue 20): steps <= 0.40, wall time <= 0.50, best val/loss within 0.02 of the unpruned.

    python benchmarks/pruned_search.py --rounds 3                          # the real run
    python benchmarks/pruned_search.py --rounds 1 --trials 4 --steps 50   # a quick check

The preprocessing cache is filled by an untimed run first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare"
SEARCHES = {"unpruned": ["hparams_search=default_optuna", "hydra.sweeper.n_jobs=2"], "asha": ["hparams_search=asha"]}
GOALS = {"steps": 0.40, "wall_s": 0.50}
MAX_BEST_GAP = 0.02


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each runs both searches, in alternating order")
    parser.add_argument("--trials", type=int, default=16, help="trials per search")
    parser.add_argument("--steps", type=int, default=400, help="optimizer steps of a trial that is not pruned")
    parser.add_argument("--val-every", type=int, default=25, help="optimizer steps between validations (reports)")
    parser.add_argument("--data", type=Path, default=SHAKESPEARE, help="folder with Tiny Shakespeare's input.txt")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="lmexp-pruned-search-"))
    env = {**os.environ, "LMEXP_OUTPUT_ROOT": str(root / "outputs"), "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}  # two trials side by side on one thread each
    job = ["experiment=claims/shakespeare_char", f"data.path={args.data}", "logger=csv", "optimized_metric=val/loss",
           f"trainer.max_steps={args.steps}", f"trainer.val_check_interval={args.val_every}",
           "trainer.limit_val_batches=4", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
           f"hydra.sweeper.n_trials={args.trials}", "seed=1"]

    def search(name: str, sweep_dir: Path) -> dict:
        command = [sys.executable, "-m", "lmexp.train", "-m", *job, *SEARCHES[name], f"hydra.sweep.dir={sweep_dir}"]
        start = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"{name}: exit status {done.returncode}\n{done.stderr[-3000:]}")
        records = [json.loads(p.read_text()) for p in sweep_dir.glob("*/summary.json")]
        losses = [r["metrics"]["val/loss"] for r in records if r["status"] == "completed"]
        return {"steps": sum(r["global_step"] or 0 for r in records), "wall_s": wall, "best": min(losses),
                "pruned": sum(r["status"] == "pruned" for r in records), "line": done.stdout.strip().splitlines()[-2]}

    print(f"untimed warm-up (preprocessing cache) in {root}", flush=True)
    subprocess.run([sys.executable, "-m", "lmexp.train", *job[:3], "trainer.max_steps=1"], env=env, cwd=root,
                   check=True, capture_output=True)
    ratios: dict[str, list[float]] = {"steps": [], "wall_s": [], "best_gap": []}
    for round_ in range(args.rounds):
        order = list(SEARCHES) if round_ % 2 == 0 else list(reversed(SEARCHES))
        results = {name: search(name, root / f"round{round_}-{name}") for name in order}
        for name in order:
            r = results[name]
            print(f"round {round_ + 1} {name:>8}: {r['steps']:6d} steps  {r['wall_s']:7.1f} s  best val/loss "
                  f"{r['best']:.4f}  ({r['line']})", flush=True)
        base, pruned = results["unpruned"], results["asha"]
        ratios["steps"].append(pruned["steps"] / base["steps"])
        ratios["wall_s"].append(pruned["wall_s"] / base["wall_s"])
        ratios["best_gap"].append(pruned["best"] - base["best"])
        print(f"round {round_ + 1}   asha/unpruned: steps {ratios['steps'][-1]:.3f}  wall {ratios['wall_s'][-1]:.3f}  "
              f"best val/loss gap {ratios['best_gap'][-1]:+.4f}", flush=True)
    medians = {k: statistics.median(v) for k, v in ratios.items()}
    print(f"median over {args.rounds} round(s): steps {medians['steps']:.3f} (goal <= {GOALS['steps']})  "
          f"wall {medians['wall_s']:.3f} (goal <= {GOALS['wall_s']})  "
          f"best val/loss gap {medians['best_gap']:+.4f} (goal <= {MAX_BEST_GAP})")


if __name__ == "__main__":
    main()
