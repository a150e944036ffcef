"""Start-up against its floor (issue #22, item 2), alternated round by round, warm caches.

Floor: `python -c "import pytorch_lightning, wandb"`, the libraries every default run needs.
lmexp: the default run (`lmexp-train`, one step, no test) from command start to its first training
batch (lmexp.callbacks.StepTimes: the first step's end minus its duration, on the wall clock).
Goal: lmexp <= floor + 2 s, median over the rounds. A first, untimed run warms the caches
(tokenizer, packed corpus, .pyc files).

    python benchmarks/startup.py --rounds 5
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

ROOT = Path(__file__).resolve().parent.parent
GOAL_S = 2.0


def floor_s() -> float:
    start = time.time()
    subprocess.run([sys.executable, "-c", "import pytorch_lightning, wandb"], check=True)
    return time.time() - start


def first_batch_s(work: Path, index: int) -> float:
    """Seconds from starting `lmexp-train` (the default run, cut to one step) to its first training batch."""
    times = work / f"steps-{index}.jsonl"
    entry = Path(sys.executable).with_name("lmexp-train")  # beside this Python: a venv need not be on PATH
    cmd = [str(entry) if entry.exists() else "lmexp-train", f"hydra.run.dir={work / f'run-{index}'}",
           "trainer.max_steps=1", "test=false", "+callbacks.step_times._target_=lmexp.callbacks.StepTimes",
           f"+callbacks.step_times.path={times}"]
    start = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "WANDB_MODE": "offline"})
    first = json.loads(times.read_text().splitlines()[0])
    return first["end"] - first["seconds"] - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lmexp-startup-"))
    first_batch_s(work, -1)  # warm the caches
    rows = []
    for index in range(args.rounds):
        # Alternate which goes first, so a drift of the machine's speed favours neither.
        if index % 2:
            lm, floor = first_batch_s(work, index), floor_s()
        else:
            floor, lm = floor_s(), first_batch_s(work, index)
        rows.append((floor, lm))
        print(f"round {index}: floor {floor:.2f} s, lmexp first batch {lm:.2f} s, over the floor {lm - floor:+.2f} s",
              flush=True)
    over = statistics.median(lm - floor for floor, lm in rows)
    print(f"medians over {args.rounds} alternated rounds: floor {statistics.median(r[0] for r in rows):.2f} s, "
          f"lmexp {statistics.median(r[1] for r in rows):.2f} s, over the floor {over:+.2f} s "
          f"(goal <= +{GOAL_S} s: {'PASS' if over <= GOAL_S else 'FAIL'})")


if __name__ == "__main__":
    main()
