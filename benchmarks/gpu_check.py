"""The GPU check (issue #22, item 4): one table from one GPU, about 5 minutes on an H100 (estimated).

1. GPT-2 small (`model=gpt_small`, GPT-2's 50257-token vocabulary, 124M parameters) in bf16 with
   torch.compile on the default corpus: steady training tokens/s and MFU (lmexp.flops' FLOP count
   against the GPU's data-sheet bf16 peak).
2. nanoGPT's GPU recipe, `lmexp-train experiment=nanogpt_shakespeare_char`, beside nanoGPT's own
   `train.py config/train_shakespeare_char.py` (its GPU defaults: bf16, compile), both for `--iters`
   iterations (default: the recipe's 5000; the schedules decay over them): wall time, training
   ms/iter, tokens/s, MFU on lmexp's basis (the models have the same shape, so nanoGPT's MFU is
   lmexp's FLOPs per token times nanoGPT's tokens/s) and validation loss.

Training ms/iter, the same for both: the mean over iterations, after the first 10 (compile), of the
wall time between two optimizer steps' ends, leaving out those that include an evaluation. The mean,
not the median: lmexp's step does not wait for the GPU, so single intervals are uneven on a GPU.

Offline: nanoGPT is a checkout given by path (not part of lmexp); its data is prepared from Tiny
Shakespeare's input.txt (--data). Without a nanoGPT path its row is left out.

    python benchmarks/gpu_check.py --nanogpt /path/to/nanoGPT            # on one GPU
    python benchmarks/gpu_check.py --nanogpt /path/to/nanoGPT --dry-run  # every step on CPU, tiny shapes
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from nanogpt_side_by_side import SHAKESPEARE, prepare_nanogpt, run_lmexp, run_nanogpt

SKIP = 10  # first iterations left out of the step time: compilation and warm-up

# GPT-2 small in bf16, compiled, a short run on the default corpus (no test split, one CSV logger).
GPT_SMALL = ["model=gpt_small", "trainer=gpu", "impl.compile=true", "trainer.max_steps=100",
             "trainer.val_check_interval=100", "trainer.limit_val_batches=2", "test=false", "logger=csv"]
# At GPT-2's vocabulary (the tokenizer's 4096 ids fit in it) and context; the dry run's: CPU, tiny shapes.
# Validation batches as big as training's: 64 rows of 1024 positions' 50257 logits would be 13 GB.
GPT_SMALL_SHAPE = ["model.vocab_size=50257", "data.block_size=1024", "data.batch_size=16", "data.eval_batch_size=16"]
GPT_SMALL_DRY = ["trainer.accelerator=cpu", "model.d_model=32", "model.n_layers=1", "model.n_heads=2",
                 "data.block_size=32", "data.batch_size=2", "data.eval_batch_size=16", "trainer.max_steps=14",
                 "trainer.val_check_interval=14", "impl.compile=false", "data.source.max_files=5",
                 "tokenizer.vocab_size=300"]
RECIPE_DRY = ["trainer.accelerator=cpu", "model.d_model=32", "model.n_layers=1", "model.n_heads=2",
              "data.block_size=16", "data.batch_size=2", "data.eval_batch_size=16", "trainer.limit_val_batches=2",
              "impl.compile=false"]
NANOGPT_DRY = ["--device=cpu", "--compile=False", "--dtype=float32", "--n_layer=1", "--n_head=2", "--n_embd=32",
               "--block_size=16", "--batch_size=2", "--eval_iters=2"]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def tokens_per_s(ms_per_iter: float, tokens_per_iter: int) -> float:
    return tokens_per_iter / (ms_per_iter / 1000)


def steady_mfu(run: dict, steady_tokens_per_s: float) -> float | None:
    """The run record's MFU is the whole run's (with compilation); at a fixed sequence length it is
    proportional to tokens/s, so the steady MFU is it scaled to the steady tokens/s."""
    if not run.get("mfu") or not run.get("tokens_per_s"):
        return None
    return run["mfu"] * steady_tokens_per_s / run["tokens_per_s"]


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nanogpt", type=Path, default=None, help="a karpathy/nanoGPT checkout; none: no nanoGPT row")
    parser.add_argument("--data", type=Path, default=SHAKESPEARE, help="the folder with Tiny Shakespeare's input.txt")
    parser.add_argument("--iters", type=int, default=5000, help="iterations of the nanoGPT recipe (fewer: quicker)")
    parser.add_argument("--dry-run", action="store_true", help="every step on CPU with tiny shapes and few steps")
    parser.add_argument("--work", type=Path, default=None, help="logs and run folders (default: a temp folder)")
    args = parser.parse_args()

    start = time.perf_counter()
    work = (args.work or Path(tempfile.mkdtemp(prefix="gpu-check-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    iters = 6 if args.dry_run else args.iters
    eval_interval = iters if args.dry_run else 250  # the recipe's; the dry run evaluates at its end only
    print(f"work folder: {work}", flush=True)
    rows = []

    small = run_lmexp(work, "gpt-small", [*GPT_SMALL, *(GPT_SMALL_DRY if args.dry_run else GPT_SMALL_SHAPE)],
                      skip=2 if args.dry_run else SKIP, average=mean)
    small_tokens = 2 * 32 if args.dry_run else 16 * 1024
    tps = tokens_per_s(small["train_ms_per_iter"], small_tokens)
    rows.append(("lmexp gpt_small bf16 compiled", small, tps, steady_mfu(small, tps)))

    # The recipe's batch of 64 x 256 characters (dry run: 2 x 16).
    recipe_tokens = 2 * 16 if args.dry_run else 64 * 256
    skip = 1 if args.dry_run else SKIP
    data = args.data.resolve()
    if args.dry_run:  # lmexp's final validation covers the whole split: a small copy keeps it short
        data = work / "tiny-shakespeare"
        data.mkdir(exist_ok=True)
        (data / "input.txt").write_text((args.data / "input.txt").read_text()[:30_000])
    recipe = ["experiment=nanogpt_shakespeare_char", f"data.path={data}",
              f"trainer.max_steps={iters}", f"trainer.val_check_interval={eval_interval}", "logger=csv",
              *(RECIPE_DRY if args.dry_run else [])]
    lm = run_lmexp(work, "recipe", recipe, iters=iters, skip=skip, average=mean)
    lm_tps = tokens_per_s(lm["train_ms_per_iter"], recipe_tokens)
    rows.append(("lmexp nanogpt_shakespeare_char", lm, lm_tps, steady_mfu(lm, lm_tps)))
    if args.nanogpt is None:
        print("nanoGPT: no --nanogpt checkout given, its row is left out", flush=True)
    else:
        nanogpt = args.nanogpt.resolve()
        prepare_nanogpt(nanogpt, args.data / "input.txt")
        nano_args = ["config/train_shakespeare_char.py", "--log_interval=1", f"--max_iters={iters}",
                     f"--lr_decay_iters={iters}", f"--eval_interval={eval_interval}",
                     *(NANOGPT_DRY if args.dry_run else [])]
        nano = run_nanogpt(nanogpt, work, "recipe", nano_args, iters=iters, eval_interval=eval_interval, skip=skip,
                           average=mean)
        nano_tps = tokens_per_s(nano["train_ms_per_iter"], recipe_tokens)
        # Same model shape, so the same FLOPs per token: MFU on lmexp's basis is proportional to tokens/s.
        nano_mfu = rows[-1][3] and rows[-1][3] * nano_tps / lm_tps
        rows.append(("nanoGPT train.py shakespeare_char", nano, nano_tps, nano_mfu))

    print(f"\n{'run':<34} {'wall s':>7} {'ms/iter':>8} {'tokens/s':>10} {'MFU %':>6} {'val loss':>9}")
    for name, r, tps, mfu in rows:
        print(f"{name:<34} {r['wall_s']:7.1f} {r['train_ms_per_iter']:8.2f} {tps:10,.0f} "
              f"{fmt(mfu and 100 * mfu, '6.1f')} {fmt(r['val_loss_20_batches'], '9.4f')}")
    print(f"val loss: at iteration {iters} (lmexp: its periodic validation, limit_val_batches batches; nanoGPT: "
          f"eval_iters batches). Took {time.perf_counter() - start:.0f} s.")
    if args.dry_run:
        print("DRY RUN: CPU, tiny shapes; the numbers only show that every step ran.")


if __name__ == "__main__":
    main()
