"""FLOPs per token (6N + 12 L d T) against a hand count and torch's FLOP counter; peak FLOP/s."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from conftest import SMALL_MODEL, TINY, read_summary
from lmexp import flops
from lmexp.train import train
from lmexp.models.transformer import Transformer

V, D, L, T = 50, 16, 2, 8


def small_model(**kwargs) -> Transformer:
    return Transformer(vocab_size=V, max_seq_len=T, d_model=D, n_layers=L, n_heads=2, **kwargs)


def test_flops_per_token_matches_a_hand_count():
    model = small_model(bias=True, tie_embeddings=True)
    # Per block: qkv (D x 3D + 3D), attention out (D x D + D), MLP (D x 4D + 4D, 4D x D + D), two
    # LayerNorms (2 x 2D); then the final LayerNorm (2D) and the head, tied to the token embedding
    # (V x D, counted once). The position table (T x D) is only looked up: not counted.
    per_block = (D * 3 * D + 3 * D) + (D * D + D) + (D * 4 * D + 4 * D) + (4 * D * D + D) + 2 * 2 * D
    n = L * per_block + 2 * D + V * D
    assert flops.matmul_parameters(model) == n == model.num_parameters() - T * D
    assert flops.attention_shape(model) == (L, D)
    assert flops.flops_per_token(model, T) == 6 * n + 12 * L * D * T


def test_untied_head_counts_the_head_not_the_table():
    tied, untied = small_model(tie_embeddings=True), small_model(tie_embeddings=False)
    assert flops.matmul_parameters(untied) == flops.matmul_parameters(tied)
    assert untied.num_parameters() == tied.num_parameters() + V * D


def test_formula_equals_torch_flop_counter_on_matrix_multiplies():
    # torch counts matmul and attention FLOPs of forward + backward; it does not count LayerNorm
    # (whose 2D parameters per norm are in N), so those are the only difference. The math attention
    # backend: torch's counter does not know the fused CPU attention kernel.
    model = small_model(bias=False, tie_embeddings=True)
    ids = torch.randint(0, V, (3, T))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        logits = model(ids)
        F.cross_entropy(logits.flatten(0, 1), ids.flatten()).backward()
    norm_params = sum(p.numel() for name, p in model.named_parameters() if "ln" in name)
    expected = (flops.flops_per_token(model, T) - 6 * norm_params) * ids.numel()
    assert counter.get_total_flops() == expected


def test_peaks_of_known_gpus_by_precision():
    assert flops.gpu_peak_flops("NVIDIA H100 80GB HBM3", "bf16-mixed") == 989e12
    assert flops.gpu_peak_flops("NVIDIA H100 PCIe", "bf16-mixed") == 756e12
    assert flops.gpu_peak_flops("NVIDIA A100-SXM4-80GB", "32-true", "high") == 156e12
    assert flops.gpu_peak_flops("NVIDIA A100-SXM4-80GB", "32-true", "highest") == 19.5e12
    assert flops.gpu_peak_flops("NVIDIA A10G", "16-mixed") == 70e12
    assert flops.gpu_peak_flops("Some Future GPU", "bf16-mixed") is None


def test_cpu_peak_is_measured_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    flops.cpu_peak_flops.cache_clear()
    measured = flops.cpu_peak_flops()
    assert measured > 1e8  # any CPU does 0.1 GFLOP/s
    cached = json.loads((tmp_path / "lmexp" / "cpu_peak_flops.json").read_text())
    assert list(cached.values()) == [measured]
    flops.cpu_peak_flops.cache_clear()

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(flops, "measure_cpu_matmul_flops", no_measuring)
    assert flops.cpu_peak_flops() == measured
    flops.cpu_peak_flops.cache_clear()


def test_a_run_faster_than_the_measured_cpu_peak_raises_it(make_cfg, tmp_path, monkeypatch, small_corpus):
    """A peak measured at a busy moment would put train/mfu above 1: the run's own rate bounds it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    flops._write_cpu_peak(1e6)  # cached from a busy moment: far below what any run computes
    monkeypatch.setattr(flops, "measure_cpu_matmul_flops", lambda: 2e6)  # and measured low again
    try:
        train(make_cfg([*TINY, "data=text_files", f"data.train_files={small_corpus}/*.txt", "tokenizer=byte",
                        *SMALL_MODEL["native"], "trainer.accelerator=cpu"]))
        summary = read_summary(tmp_path / "run")
        assert summary["flops_per_s"] > 2e6
        assert summary["mfu"] == pytest.approx(1.0)  # the peak is at least what this run reached
        assert flops.cpu_peak_flops() == pytest.approx(summary["flops_per_s"])  # kept for the next run
    finally:
        flops.cpu_peak_flops.cache_clear()
