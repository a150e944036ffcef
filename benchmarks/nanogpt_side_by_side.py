"""lmexp against karpathy/nanoGPT on nanoGPT's own CPU recipe, alternated round by round.

Each round runs nanoGPT's train.py (config/train_shakespeare_char.py with the README's CPU flags),
the same with --compile=True (nanoGPT's fastest on CPU), and `lmexp-train
experiment=nanogpt_shakespeare_char_cpu`, each as its own command, in an order that rotates round by
round, and prints for each: the whole command's wall time, the training ms/iter, the validation loss
at 2000 iterations; then the two ratios of the goals (GOALS) and their medians over the rounds.

Training ms/iter, the same for both: the median over iterations of the wall time from one
optimizer step's end to the next (nanoGPT's own `dt`, printed every iteration with
--log_interval=1; lmexp's from the lmexp.callbacks.StepTimes callback), leaving out the
iterations that include an evaluation (nanoGPT: iter % 250 == 0; lmexp: those with a validation).
Validation loss: nanoGPT's "step 2000: ... val loss" (a 20-batch estimate); lmexp's final val/loss
over the whole validation split (summary.json), and its 20-batch value at step 2000 (csv).

nanoGPT is not part of lmexp: fetch it anywhere (e.g. `git clone https://github.com/karpathy/nanoGPT
/tmp/nanogpt`) and pass its path. Its data is prepared here from Tiny Shakespeare's input.txt
(data/shakespeare_char/prepare.py, given the file instead of downloading it).

    python benchmarks/nanogpt_side_by_side.py /tmp/nanogpt --rounds 3
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NANOGPT_ARGS = [
    "config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1",
    "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--max_iters=2000",
    "--lr_decay_iters=2000", "--dropout=0.0",
]
EVAL_INTERVAL = 250  # config/train_shakespeare_char.py; lmexp's experiment validates at the same steps
ITERS = 2000
# Goals (issue #22), lmexp / its peer <= 1.0: lmexp's step against nanoGPT's fastest (compiled) step,
# and lmexp's whole command against nanoGPT's recipe as its README gives it (eager).
GOALS = {"training ms/iter vs compiled": ("train_ms_per_iter", "nanoGPT compiled"),
         "whole command vs eager": ("wall_s", "nanoGPT eager")}
MAX_VAL_LOSS = 1.90
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare"


def prepare_nanogpt(nanogpt: Path, input_txt: Path) -> None:
    data = nanogpt / "data" / "shakespeare_char"
    if (data / "train.bin").exists() and (data / "meta.pkl").exists():
        return
    shutil.copyfile(input_txt, data / "input.txt")  # prepare.py downloads it only when it is missing
    subprocess.run([sys.executable, "prepare.py"], cwd=data, check=True, stdout=subprocess.DEVNULL)


def cpu_times() -> list[int] | None:
    """The machine's CPU time counters (/proc/stat; None elsewhere): for the steal share below."""
    try:
        return [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return None


def timed(cmd: list[str], cwd: Path, log: Path, env: dict | None = None) -> tuple[float, float | None]:
    """The command's wall time, and the share of CPU time a virtual machine's host took away (steal)
    meanwhile: a round with high steal was measured on a busy host."""
    before = cpu_times()
    start = time.perf_counter()
    with log.open("w") as out:
        result = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(cmd)}; see {log}")
    after = cpu_times()
    steal = None
    if before and after and len(after) > 7 and sum(after) > sum(before):
        steal = (after[7] - before[7]) / (sum(after) - sum(before))
    return seconds, steal


def run_nanogpt(nanogpt: Path, work: Path, name: str, args: list[str], iters: int = ITERS,
                eval_interval: int = EVAL_INTERVAL, skip: int = 0, average=statistics.median) -> dict:
    """nanoGPT's train.py with `args`: `average` of its per-iteration times (after the first `skip`,
    leaving out the iterations that evaluate) and its validation loss at `iters`."""
    log = work / f"nanogpt-{name}.log"
    wall, steal = timed([sys.executable, "train.py", *args, f"--out_dir={work / f'nanogpt-out-{name}'}"], nanogpt, log)
    text = log.read_text()
    times = [(int(n), float(ms)) for n, ms in re.findall(r"^iter (\d+): loss [\d.]+, time ([\d.]+)ms", text, re.M)]
    train_ms = [ms for n, ms in times if n % eval_interval != 0 and n >= skip]
    val = re.findall(rf"^step {iters}: train loss [\d.]+, val loss ([\d.]+)", text, re.M)
    return {"wall_s": wall, "train_ms_per_iter": average(train_ms), "iterations": len(times),
            "val_loss": float(val[-1]) if val else None, "val_loss_20_batches": float(val[-1]) if val else None,
            "steal": steal}


def run_lmexp(work: Path, name: str, overrides: list[str], iters: int = ITERS, skip: int = 0,
              average=statistics.median) -> dict:
    """`lmexp-train *overrides`: `average` of the times between optimizer steps (after the first `skip`,
    leaving out those with a validation), the run record's numbers, and the periodic val/loss at `iters`."""
    run_dir = work / f"lmexp-run-{name}"
    log = work / f"lmexp-{name}.log"
    times = work / f"lmexp-steps-{name}.jsonl"
    # The entry point beside this Python (a virtual environment need not be on PATH).
    entry = Path(sys.executable).with_name("lmexp-train")
    cmd = [str(entry) if entry.exists() else "lmexp-train", f"hydra.run.dir={run_dir}",
           "+callbacks.step_times._target_=lmexp.callbacks.StepTimes", f"+callbacks.step_times.path={times}", *overrides]
    env = {**os.environ, "WANDB_MODE": "offline"}
    wall, steal = timed(cmd, ROOT, log, env)
    steps = [json.loads(line) for line in times.read_text().splitlines()]
    train_ms = [1000 * s["seconds"] for s in steps[skip:] if not s["validated"]]
    summary = json.loads((run_dir / "summary.json").read_text())
    val_20 = None
    metrics_csv = next(run_dir.glob("**/metrics.csv"), None)
    if metrics_csv is not None:
        with metrics_csv.open() as f:
            rows = [r for r in csv.DictReader(f) if r.get("val/loss") and r.get("step") == str(iters - 1)]
        val_20 = float(rows[-1]["val/loss"]) if rows else None
    return {"wall_s": wall, "train_ms_per_iter": average(train_ms), "iterations": len(steps),
            "val_loss": summary["metrics"].get("val/loss"), "val_loss_20_batches": val_20,
            "tokens_per_s": summary.get("tokens_per_s"), "mfu": summary.get("mfu"), "steal": steal}


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("nanogpt", type=Path, help="a karpathy/nanoGPT checkout (its train.py is run there)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, default=SHAKESPEARE, help="the folder with Tiny Shakespeare's input.txt")
    parser.add_argument("--work", type=Path, default=None, help="logs and run folders (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write every round's numbers here")
    parser.add_argument("lmexp_overrides", nargs="*", help="extra lmexp-train overrides, e.g. impl.compile=false")
    args = parser.parse_args()

    nanogpt = args.nanogpt.resolve()
    work = (args.work or Path(tempfile.mkdtemp(prefix="side-by-side-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    prepare_nanogpt(nanogpt, args.data / "input.txt")
    print(f"work folder: {work}; lmexp overrides: {args.lmexp_overrides or 'none'}", flush=True)
    lmexp_overrides = ["experiment=nanogpt_shakespeare_char_cpu", f"data.path={args.data.resolve()}",
                       *args.lmexp_overrides]

    rounds = []
    print(f"{'round':>5} {'':>16} {'wall s':>8} {'ms/iter':>8} {'val loss':>9} {'val@2000 (20 b.)':>17} "
          f"{'steal %':>7}")
    for index in range(args.rounds):
        # The order rotates round by round, so a drift of the machine's speed favours none of the three.
        runs = {
            "nanoGPT eager": lambda: run_nanogpt(nanogpt, work, f"eager-{index}", NANOGPT_ARGS),
            "nanoGPT compiled": lambda: run_nanogpt(nanogpt, work, f"compiled-{index}",
                                                    [*NANOGPT_ARGS, "--compile=True"]),
            "lmexp": lambda: run_lmexp(work, str(index), lmexp_overrides),
        }
        names = list(runs)
        names = names[index % 3:] + names[:index % 3]
        results = {name: runs[name]() for name in names}
        rounds.append(results)
        for name, r in results.items():
            print(f"{index:>5} {name:>16} {r['wall_s']:8.1f} {r['train_ms_per_iter']:8.2f} "
                  f"{fmt(r['val_loss'], '9.4f')} {fmt(r['val_loss_20_batches'], '17.4f')} "
                  f"{fmt(r['steal'] and 100 * r['steal'], '7.1f')}", flush=True)
        ratios = ", ".join(f"{label} {results['lmexp'][key] / results[peer][key]:.3f}"
                           for label, (key, peer) in GOALS.items())
        print(f"{index:>5} {'lmexp ratios':>16} {ratios}", flush=True)

    def median(who: str, key: str) -> float:
        return statistics.median(r[who][key] for r in rounds)

    print(f"\nmedians over {args.rounds} alternated rounds:")
    ok = True
    for label, (key, peer) in GOALS.items():
        ratio = statistics.median(r["lmexp"][key] / r[peer][key] for r in rounds)
        ok &= ratio <= 1.0
        print(f"  {label:>28}: {peer} {median(peer, key):8.2f}  lmexp {median('lmexp', key):8.2f}  "
              f"ratio {ratio:.3f} (goal <= 1.0) {'PASS' if ratio <= 1.0 else 'FAIL'}")
    val = median("lmexp", "val_loss")
    ok &= val <= MAX_VAL_LOSS
    print(f"  {'val loss':>28}: nanoGPT eager {median('nanoGPT eager', 'val_loss'):8.4f}  lmexp {val:8.4f} "
          f"(whole split; goal <= {MAX_VAL_LOSS}) {'PASS' if val <= MAX_VAL_LOSS else 'FAIL'}")
    print("overall:", "PASS" if ok else "FAIL")
    if args.json:
        args.json.write_text(json.dumps({"rounds": rounds, "overrides": args.lmexp_overrides}, indent=1))


if __name__ == "__main__":
    main()
