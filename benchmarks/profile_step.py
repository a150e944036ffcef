"""Where lmexp's training step spends its time: torch.profiler over Lightning fit steps.

nanoGPT's CPU-recipe shape (4 layers, 128 wide, 65-token vocabulary, batch 12 x 64) on random
tokens, through LMModule and a Lightning Trainer as `lmexp-train` builds them, with the speed
settings given (lmexp.impl.Impl). Prints the top operators by self CPU time, and the share of
Python/Lightning time outside torch operators.

    python benchmarks/profile_step.py                       # conf/impl/default.yaml's settings
    python benchmarks/profile_step.py --no-fused            # the plain for-loop AdamW
    python benchmarks/profile_step.py --compile             # torch.compile (inductor)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="profiled steps")
    parser.add_argument("--warmup", type=int, default=20, help="steps before profiling (compilation)")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--no-fused", action="store_true")
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args()

    import pytorch_lightning as pl
    import torch
    from torch.profiler import ProfilerActivity, profile

    from lmexp.impl import Impl
    from lmexp.models.transformer import Transformer
    from lmexp.module import LMModule
    from lmexp.objectives.causal import CausalLM
    from lmexp.optim import cosine_schedule

    class Vocab:
        def __len__(self) -> int:
            return 65

    impl = Impl(compile=args.compile, fused_optimizer=not args.no_fused)
    torch.manual_seed(0)
    model = Transformer(vocab_size=65, max_seq_len=64, d_model=128, n_layers=4, n_heads=4, bias=False)
    objective = CausalLM(attention="causal")
    objective.bind(Vocab())
    total = args.warmup + args.steps
    batches = [objective.collate(torch.randint(0, 65, (12, 65))) for _ in range(total)]
    module = LMModule(model, objective, partial(torch.optim.AdamW, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1),
                      partial(cosine_schedule, warmup_steps=10), decay_embeddings=True, impl=impl)

    class Profiled(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == args.warmup:
                self.prof = profile(activities=[ProfilerActivity.CPU])
                self.prof.__enter__()
                self.start = time.perf_counter()

        def on_train_end(self, trainer, pl_module):
            self.seconds = time.perf_counter() - self.start
            self.prof.__exit__(None, None, None)

    timer = Profiled()
    tmp = tempfile.mkdtemp(prefix="lmexp-profile-")
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=total, limit_val_batches=0, gradient_clip_val=1.0,
                         logger=pl.loggers.CSVLogger(tmp, name="csv"), enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, log_every_n_steps=10,
                         callbacks=[timer], default_root_dir=tmp)
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    averages = timer.prof.key_averages()
    ops = sum(e.self_cpu_time_total for e in averages) / 1e6
    print(f"{impl}\n{args.steps} steps: {1000 * timer.seconds / args.steps:.2f} ms/step wall "
          f"(profiled, so slower than unprofiled); torch ops {1000 * ops / args.steps:.2f} ms/step, "
          f"outside ops (Python, Lightning, profiler) {100 * (1 - ops / timer.seconds):.1f}%")
    print(averages.table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
