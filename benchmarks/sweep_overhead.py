"""Wall time of sweeps from the command line, each command in a fresh process, as a user runs them.

1. A 2x2 sweep (optimizer.lr x seed, short runs of the default model on Tiny Shakespeare) with
   the basic launcher, then with hydra/launcher=joblib n_jobs=2: the ratio.
2. Four jobs of trainer.max_steps=1 as one sweep, then as four single runs: wall time per job.

    python benchmarks/sweep_overhead.py --steps 50

Prints every command with its wall time. The preprocessing cache is filled by an untimed run first.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50, help="training steps of each job of the 2x2 sweep")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="lmexp-sweep-bench-"))
    env = {**os.environ, "LMEXP_OUTPUT_ROOT": str(root / "outputs"), "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    job = ["data=tinyshakespeare", f"data.path={SHAKESPEARE}", "tokenizer=char", "callbacks=minimal",
           "trainer.enable_progress_bar=false", "trainer.limit_val_batches=5", "trainer.limit_test_batches=5"]

    def run(*overrides: str, sweep: bool = False) -> float:
        command = [sys.executable, "-m", "lmexp.train", *(["-m"] if sweep else []), *job, *overrides]
        start = time.perf_counter()
        subprocess.run(command, env=env, cwd=root, check=True, capture_output=True)
        seconds = time.perf_counter() - start
        print(f"{seconds:7.1f}s  {shlex.join(command[1:])}", flush=True)
        return seconds

    run("trainer.max_steps=1")  # untimed: fills the preprocessing cache
    print(f"2x2 sweep, {args.steps} steps per job:")
    short = [f"trainer.max_steps={args.steps}", f"trainer.val_check_interval={args.steps}"]
    two_by_two = [*short, "optimizer.lr=1e-3,3e-3", "seed=1,2"]
    basic = run(*two_by_two, sweep=True)
    joblib = run(*two_by_two, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", sweep=True)
    print(f"basic / joblib(n_jobs=2) = {basic / joblib:.2f}")

    print("4 jobs of 1 step: one sweep vs four single runs:")
    tiny = ["trainer.max_steps=1", "trainer.val_check_interval=1"]
    as_sweep = run(*tiny, "seed=1,2,3,4", sweep=True)
    singles = sum(run(*tiny, f"seed={seed}") for seed in (1, 2, 3, 4))
    print(f"per job: {as_sweep / 4:.1f}s in one sweep, {singles / 4:.1f}s as single runs")


if __name__ == "__main__":
    main()
