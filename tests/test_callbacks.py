"""TokenThroughput (tokens/s, FLOP/s, MFU) and StepTimes in a real (tiny) Lightning fit."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import partial

import pytest
import pytorch_lightning as pl
import torch

from lmexp import flops
from lmexp.callbacks import StepTimes, TokenThroughput
from lmexp.models.transformer import Transformer
from lmexp.module import LMModule
from lmexp.objectives.causal import CausalLM

V, T, B, STEPS = 40, 8, 4, 6


class Vocab:
    def __len__(self) -> int:
        return V


def fit(tmp_path, callbacks, impl=None, log_every_n_steps=2, val_every=None) -> LMModule:
    torch.manual_seed(0)
    model = Transformer(vocab_size=V, max_seq_len=T, d_model=16, n_layers=1, n_heads=2)
    objective = CausalLM(attention="causal")
    objective.bind(Vocab())
    rows = torch.randint(0, V, (STEPS * B, T + 1))
    loader = torch.utils.data.DataLoader(rows, batch_size=B, 
                                         collate_fn=lambda batch: objective.collate(torch.stack(batch)))
    module = LMModule(model, objective, partial(torch.optim.AdamW, lr=1e-3), impl=impl)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=STEPS, logger=False, callbacks=callbacks,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        log_every_n_steps=log_every_n_steps, default_root_dir=tmp_path,
        limit_val_batches=1 if val_every else 0, val_check_interval=val_every, num_sanity_val_steps=0,
    )
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader if val_every else None)
    return module, trainer


def test_throughput_flops_and_mfu_follow_from_the_formula_and_the_set_peak(tmp_path):
    throughput = TokenThroughput()
    module, trainer = fit(tmp_path, [throughput], impl={"peak_flops": 1e9})
    assert throughput.peak_flops == 1e9  # impl.peak_flops wins over detection
    assert throughput.tokens == STEPS * B * T
    per_token = flops.flops_per_token(module.model, T)
    assert throughput.flops == pytest.approx(per_token * throughput.tokens)
    assert throughput.flops_per_s == pytest.approx(per_token * throughput.tokens_per_s)
    assert throughput.mfu == pytest.approx(throughput.flops_per_s / 1e9)
    logged = trainer.callback_metrics
    assert {"train/tokens_per_s", "train/flops_per_s", "train/mfu"} <= set(logged)
    assert float(logged["train/mfu"]) == pytest.approx(float(logged["train/flops_per_s"]) / 1e9, rel=1e-5)


def test_peak_given_to_the_callback_is_kept(tmp_path):
    throughput = TokenThroughput(peak_flops=2e9)
    fit(tmp_path, [throughput], impl={"peak_flops": 1e9})
    assert throughput.peak_flops == 2e9
    assert throughput.mfu == pytest.approx(throughput.flops_per_s / 2e9)


def test_step_times_has_one_row_per_step_and_marks_the_validation(tmp_path):
    path = tmp_path / "steps.jsonl"
    fit(tmp_path, [StepTimes(str(path))], val_every=3)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert all(r["seconds"] > 0 for r in rows)
    ends = [r["end"] for r in rows]  # on the wall clock, one step's end after the other
    assert ends == sorted(ends) and ends[-1] - ends[0] <= sum(r["seconds"] for r in rows[1:]) + 1
    # Validation runs after step 3 (and 6, after the last row): the interval ending at step 4 holds it.
    assert [r["step"] for r in rows if r["validated"]] == [4]


def test_callbacks_module_does_not_import_generation():
    code = "import sys, lmexp.callbacks; print('lmexp.tools.generate' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_mixed_precision_with_clipping_trains_with_an_unfused_optimizer(tmp_path):
    # Lightning refuses to clip gradients of a fused optimizer under 16-mixed/bf16-mixed.
    torch.manual_seed(0)
    model = Transformer(vocab_size=V, max_seq_len=T, d_model=16, n_layers=1, n_heads=2)
    objective = CausalLM(attention="causal")
    objective.bind(Vocab())
    rows = torch.randint(0, V, (2 * B, T + 1))
    loader = torch.utils.data.DataLoader(rows, batch_size=B, collate_fn=lambda b: objective.collate(torch.stack(b)))
    module = LMModule(model, objective, partial(torch.optim.AdamW, lr=1e-3))
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=2, precision="bf16-mixed", gradient_clip_val=1.0,
                         logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == 2
    assert not trainer.optimizers[0].param_groups[0]["fused"]
