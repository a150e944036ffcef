"""Parameter groups and schedules of lmexp/optim.py."""

from __future__ import annotations

import math
import platform
import subprocess
import sys

import pytest
import torch
from torch import nn

from lmexp.models.transformer import Transformer
from lmexp.optim import constant_schedule, cosine_schedule, linear_schedule, param_groups


def test_no_decay_on_biases_norms_and_embeddings():
    model = Transformer(vocab_size=50, max_seq_len=16, d_model=16, n_layers=1, n_heads=2)
    groups = {g["name"]: g for g in param_groups(model)}
    decayed = {id(p) for p in groups["decay"]["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    assert groups["no_decay"]["weight_decay"] == 0.0
    for pid in decayed:
        assert "emb" not in names[pid] and "ln" not in names[pid] and not names[pid].endswith("bias")
    assert all(p.dim() == 2 for p in groups["decay"]["params"])
    every = {id(p) for p in model.parameters()}
    assert decayed | {id(p) for p in groups["no_decay"]["params"]} == every
    with_emb = {g["name"]: g for g in param_groups(model, decay_embeddings=True)}
    assert len(with_emb["decay"]["params"]) > len(groups["decay"]["params"])


def lrs(make, steps: int, **kwargs) -> list[float]:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make(opt, total_steps=steps, **kwargs)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_cosine_matches_nanogpt_formula():
    got = lrs(cosine_schedule, 100, warmup_steps=10, min_lr_ratio=0.1)
    for it in (0, 5, 9):
        assert got[it] == pytest.approx((it + 1) / 11)
    for it in (10, 50, 99):
        ratio = (it - 10) / 90
        assert got[it] == pytest.approx(0.1 + 0.5 * (1 + math.cos(math.pi * ratio)) * 0.9)


def test_linear_and_constant():
    lin = lrs(linear_schedule, 20, warmup_steps=0, min_lr_ratio=0.0)
    assert lin[0] == pytest.approx(1.0) and lin[10] == pytest.approx(0.5)
    const = lrs(constant_schedule, 10, warmup_steps=4)
    assert const[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8]) and const[4:] == pytest.approx([1.0] * 6)


def test_impl_fuses_the_optimizers_that_can_and_leaves_others_alone():
    from functools import partial

    from lmexp.impl import Impl

    model = Transformer(vocab_size=50, max_seq_len=16, d_model=16, n_layers=1, n_heads=2)
    for cls in (torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD):
        factory = partial(cls, lr=1e-3)
        kwargs = Impl().optimizer_kwargs(factory)
        assert kwargs == {"fused": True}
        optimizer = factory(param_groups(model), **kwargs)
        assert all(g["fused"] for g in optimizer.param_groups)
    assert Impl(fused_optimizer=False).optimizer_kwargs(partial(torch.optim.AdamW, lr=1e-3)) == {}
    assert Impl().optimizer_kwargs(partial(torch.optim.AdamW, lr=1e-3, fused=False)) == {}  # the user's choice
    assert Impl().optimizer_kwargs(partial(torch.optim.Adagrad, lr=1e-3)) in ({}, {"fused": True})
    assert Impl().optimizer_kwargs(partial(torch.optim.LBFGS, lr=1.0)) == {}


def test_fused_and_plain_adamw_take_the_same_steps():
    from functools import partial

    from lmexp.impl import Impl

    torch.manual_seed(0)
    base = Transformer(vocab_size=30, max_seq_len=8, d_model=16, n_layers=1, n_heads=2)
    ids = torch.randint(0, 30, (4, 8))
    params = {}
    for fused in (False, True):
        model = Transformer(vocab_size=30, max_seq_len=8, d_model=16, n_layers=1, n_heads=2)
        model.load_state_dict(base.state_dict())
        factory = partial(torch.optim.AdamW, lr=1e-2, weight_decay=0.1)
        optimizer = factory(param_groups(model), **Impl(fused_optimizer=fused).optimizer_kwargs(factory))
        for _ in range(3):
            model(ids).logsumexp(-1).mean().backward()
            optimizer.step()
            optimizer.zero_grad()
        params[fused] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert not torch.equal(params[False], torch.cat([p.detach().flatten() for p in base.parameters()]))
    torch.testing.assert_close(params[True], params[False], rtol=1e-4, atol=1e-5)  # rounding only


def test_impl_unknown_key_and_bad_precision_are_errors():
    from lmexp.impl import Impl

    with pytest.raises(ValueError, match="unknown key threds"):
        Impl.from_config({"threds": 2})
    with pytest.raises(ValueError, match="matmul_precision"):
        Impl.from_config({"matmul_precision": "fast"})
    assert Impl.from_config(None) == Impl()


def test_speed_settings_leave_the_config_hash_alone():
    from omegaconf import OmegaConf

    from lmexp.runs.record import config_hash

    base = {"seed": 1, "model": {"d_model": 16}, "impl": {"compile": False, "threads": None}}
    faster = {**base, "impl": {"compile": True, "threads": 2}}
    other = {**base, "model": {"d_model": 32}}
    assert config_hash(OmegaConf.create(base)) == config_hash(OmegaConf.create(faster))
    assert config_hash(OmegaConf.create(base)) != config_hash(OmegaConf.create(other))



FAULTS_PER_TEN_STEPS = """
import hashlib, resource, sys, torch
from lmexp.impl import Impl
from lmexp.models.transformer import Transformer
Impl(keep_freed_memory=sys.argv[1] == "true").apply_process_settings()
torch.manual_seed(0)
model = Transformer(vocab_size=4096, max_seq_len=64, d_model=128, n_layers=2, n_heads=4)
optimizer = torch.optim.AdamW(model.parameters(), fused=True)
ids = torch.randint(0, 4096, (12, 65))
def step():
    loss = torch.nn.functional.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
weights = torch.cat([p.detach().flatten() for p in model.parameters()])
print(faults, hashlib.sha256(weights.numpy().tobytes()).hexdigest())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="impl.keep_freed_memory tunes glibc's malloc")
def test_keep_freed_memory_stops_steps_page_faulting_their_buffers_in_again():
    """A CPU step at nanoGPT's shape (12x64 tokens, 4096-token vocabulary): with glibc's own malloc
    thresholds each step faults thousands of pages in again (measured 31k-408k in 10 steps); with
    impl.keep_freed_memory, the default, it reuses what the last step freed (0.7k-3.8k), and trains
    bitwise the same weights. malloc's settings are process-wide, so each side runs in a fresh process."""
    def faults_and_weights(keep: bool) -> tuple[int, str]:
        run = subprocess.run([sys.executable, "-c", FAULTS_PER_TEN_STEPS, str(keep).lower()],
                             capture_output=True, text=True, check=True)
        faults, weights = run.stdout.split()[-2:]
        return int(faults), weights

    (kept, kept_weights), (default, default_weights) = faults_and_weights(True), faults_and_weights(False)
    assert kept * 4 < default, (kept, default)
    assert kept_weights == default_weights


def test_cpu_isa_probe_runs_once_per_machine_then_is_reused(tmp_path, monkeypatch):
    from torch._inductor import config, cpu_vec_isa

    from lmexp.impl import reuse_cpu_isa_probe

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    probes, probe_passes = [], [True]

    def check_build(isa, code):  # inductor's probe: build a library with the ISA's flags, load it
        probes.append(str(isa))
        return probe_passes[0]

    monkeypatch.setattr(cpu_vec_isa.VecISA, "check_build", check_build)
    forget_probes()
    # torch's own config.patch, never monkeypatch: pytest >= 9.2 undoes a patch of an attribute that
    # is not in the object's own __dict__ by deleting it, and torch's config then hides the entry,
    # breaking every later compile in the process (pytest #10644).
    with config.patch({"cpp.vec_isa_ok": None}):
        try:
            reuse_cpu_isa_probe()  # first compiled run on this machine: inductor probes, the outcome is kept
            first = list(probes)
            if not first:
                pytest.skip("this CPU claims no vector ISA, so inductor has nothing to probe")
            assert config.cpp.vec_isa_ok is None  # this run's compile uses the probe's cached outcome
            forget_probes()
            reuse_cpu_isa_probe()  # every claimed ISA worked: no probe again, and inductor is told so
            assert probes == first and config.cpp.vec_isa_ok is True

            # Where an ISA fails its probe, every run probes again: never assumed to work.
            probe_passes[0] = False
            (tmp_path / "lmexp-cpu-isa-probe.json").unlink()
            for _ in range(2):
                config.cpp.vec_isa_ok = None
                forget_probes()  # as in a new process
                before = len(probes)
                reuse_cpu_isa_probe()
                assert len(probes) > before and config.cpp.vec_isa_ok is None
        finally:
            forget_probes()
    assert config.cpp.vec_isa_ok is None  # restored, not deleted: later compiles in this process work


def forget_probes() -> None:
    """Inductor's in-process memory of ISA probe outcomes (a new process starts without it)."""
    from torch._inductor import cpu_vec_isa

    cpu_vec_isa.valid_vec_isa_list.cache_clear()
    cpu_vec_isa.VecISA._VecISA__bool__impl.cache_clear()
