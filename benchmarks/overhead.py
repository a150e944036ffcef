"""lmexp's training path against a minimal hand-written PyTorch loop, back to back in one process.

Same model (gpt_tiny shape), same batches (the default corpus, packed by lmexp), same AdamW
parameter groups, schedule, gradient clipping and speed settings (lmexp.impl.Impl: the fused
optimizer of conf/impl/default.yaml; `--compile` compiles both). The two loops alternate, round by
round, in one process; prints every round's throughputs and the median of the per-round ratios.
Goal: lmexp / hand-written >= 0.98.

    python benchmarks/overhead.py --steps 200 --rounds 5
"""

from __future__ import annotations

import argparse
import copy
import itertools
import os
import statistics
import tempfile
import time

os.environ.setdefault("WANDB_MODE", "offline")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before each measurement")
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds of both loops")
    parser.add_argument("--compile", action="store_true", help="impl.compile=true for both")
    parser.add_argument("--keep-freed-memory", action=argparse.BooleanOptionalAction, default=True,
                        help="impl.keep_freed_memory for both (--no-keep-freed-memory: glibc's own malloc thresholds)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--max-files", type=int, default=120, help="stdlib files to tokenize")
    args = parser.parse_args()

    import pytorch_lightning as pl
    import torch
    from functools import partial

    from lmexp.callbacks import TokenThroughput
    from lmexp.data.datamodule import LMDataModule
    from lmexp.data.sources import PythonStdlib
    from lmexp.impl import Impl
    from lmexp.models.transformer import Transformer
    from lmexp.module import LMModule
    from lmexp.objectives.causal import CausalLM
    from lmexp.optim import cosine_schedule, param_groups

    tmp = tempfile.mkdtemp(prefix="lmexp-bench-")
    tokenizer_cfg = {"_target_": "lmexp.data.tokenizers.build_tokenizer", "kind": "bpe", "vocab_size": 4096}
    objective = CausalLM(attention="causal")
    dm = LMDataModule(PythonStdlib(max_files=args.max_files), tokenizer_cfg, block_size=args.block_size + 1,
                      batch_size=args.batch_size, cache_dir=os.path.join(tmp, "cache"), collate=objective.collate)
    dm.prepare()
    objective.bind(dm.tokenizer)
    total = args.warmup + args.steps
    # As many epochs of the corpus as the steps need (a small corpus has fewer batches than steps).
    batches = list(itertools.islice(itertools.chain.from_iterable(itertools.repeat(dm.train_dataloader())), total))

    torch.manual_seed(0)
    template = Transformer(vocab_size=len(dm.tokenizer), max_seq_len=256, d_model=128, n_layers=4, n_heads=4)
    make_optimizer = partial(torch.optim.AdamW, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    make_scheduler = partial(cosine_schedule, warmup_steps=30, min_lr_ratio=0.1)
    tokens = args.steps * args.batch_size * args.block_size
    impl = Impl(compile=args.compile, keep_freed_memory=args.keep_freed_memory)
    impl.apply_process_settings()

    def hand_written() -> float:
        model = copy.deepcopy(template)
        optimizer = make_optimizer(param_groups(model), **impl.optimizer_kwargs(make_optimizer))
        scheduler = make_scheduler(optimizer, total_steps=total)
        model.train()
        compiled = impl.compiled(model)
        forward = model if compiled is None else compiled
        for i, batch in enumerate(batches):
            if i == args.warmup:
                start = time.perf_counter()
            loss = objective.loss(forward(batch["input_ids"]), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
        return tokens / (time.perf_counter() - start)

    class Timed(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if batch_idx == args.warmup:
                self.start = time.perf_counter()

        def on_train_end(self, trainer, module):
            self.seconds = time.perf_counter() - self.start

    def lmexp_path() -> float:
        module = LMModule(copy.deepcopy(template), objective, make_optimizer, make_scheduler, impl=impl)
        timer = Timed()
        trainer = pl.Trainer(
            accelerator="cpu", devices=1, max_steps=total, limit_val_batches=0, gradient_clip_val=1.0,
            logger=pl.loggers.CSVLogger(tmp, name="csv"), callbacks=[TokenThroughput(), timer],
            enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
            log_every_n_steps=10, default_root_dir=tmp,
        )
        trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
        return tokens / timer.seconds

    print(f"steps {args.steps} (after {args.warmup} warmup), batch {args.batch_size}x{args.block_size}, "
          f"{torch.get_num_threads()} threads, model {sum(p.numel() for p in template.parameters()) / 1e6:.2f}M, "
          f"{impl}", flush=True)
    ratios = []
    for index in range(args.rounds):
        # Alternate which loop goes first, so a drift of the machine's speed favours neither.
        if index % 2:
            lm, hand = lmexp_path(), hand_written()
        else:
            hand, lm = hand_written(), lmexp_path()
        ratios.append(lm / hand)
        print(f"round {index}: hand-written {hand:,.0f} tokens/s, lmexp {lm:,.0f} tokens/s, ratio {lm / hand:.3f}",
              flush=True)
    median = statistics.median(ratios)
    print(f"ratio lmexp / hand-written, median of {args.rounds} alternated rounds: {median:.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}; goal >= 0.98: {'PASS' if median >= 0.98 else 'FAIL'})")


if __name__ == "__main__":
    main()
