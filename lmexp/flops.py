"""Training FLOPs per token (PaLM, appendix B; nanoGPT's `estimate_mfu`) and a device's peak FLOP/s.

    flops_per_token = 6 N + 12 L d T

N: the parameters that take part in matrix multiplies (every parameter except embedding tables
that are only looked up; a tied output head counts once); L: attention layers, d: their width,
T: the sequence length. 6N is forward (2N) + backward (4N); 12 L d T is the same factor 3 on the
forward's 2 T d (QK^T) + 2 T d (AV) per layer and token. Causal masking is not discounted
(as in PaLM and nanoGPT), so MFU numbers compare with theirs.
"""

from __future__ import annotations

import functools
import os
import platform
import time
from pathlib import Path

import torch
from torch import nn

from lmexp.machine_cache import cache_home, read_json, write_json

# Dense peak FLOP/s per device from the vendors' data sheets (no sparsity): (bf16/fp16, tf32, fp32).
GPU_PEAKS = {
    "H200": (989e12, 494e12, 67e12),
    "H100 PCIe": (756e12, 378e12, 51e12),
    "H100": (989e12, 494e12, 67e12),  # SXM
    "A100": (312e12, 156e12, 19.5e12),
    "L40S": (362e12, 183e12, 91.6e12),
    "L4": (121e12, 60e12, 30e12),
    "A10G": (70e12, 35e12, 31.2e12),
    "A10": (125e12, 62.5e12, 31.2e12),
    "RTX 4090": (165e12, 82.6e12, 82.6e12),
    "RTX 3090": (71e12, 35.6e12, 35.6e12),
    "V100": (125e12, 15.7e12, 15.7e12),  # fp16 tensor cores; no bf16/tf32
    "T4": (65e12, 8.1e12, 8.1e12),
}


def matmul_parameters(model: nn.Module) -> int:
    """N: unique parameters minus embedding tables that no Linear layer also uses (a tied head)."""
    params = {id(p): p for p in model.parameters()}
    linear_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    lookup_only = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)} - linear_weights
    return sum(p.numel() for key, p in params.items() if key not in lookup_only)


def attention_shape(model: nn.Module) -> tuple[int, int]:
    """(L, d): the number of attention layers and their width; (0, 0) for a model without attention.

    Attention layers are the innermost modules whose class name ends in "Attention" (lmexp's
    SelfAttention, nn.MultiheadAttention, transformers' GPT2Attention/BertSelfAttention/...).
    """
    def is_attention(m: nn.Module) -> bool:
        return type(m).__name__.endswith("Attention")

    layers = [m for m in model.modules() if is_attention(m) and not any(is_attention(c) for c in m.modules() if c is not m)]
    if not layers:
        return 0, 0
    width = _width(model)
    return len(layers), width


def _width(model: nn.Module) -> int:
    for m in model.modules():
        for owner in (m, getattr(m, "config", None)):
            for name in ("hidden_size", "n_embd", "d_model", "embed_dim"):
                value = getattr(owner, name, None)
                if isinstance(value, int):
                    return value
    raise ValueError(f"{type(model).__name__}: no hidden_size/n_embd/d_model to size its attention")


def flops_per_token(model: nn.Module, seq_len: int) -> int:
    """Training (forward + backward) FLOPs per input token at sequence length `seq_len`."""
    layers, width = attention_shape(model)
    return 6 * matmul_parameters(model) + 12 * layers * width * seq_len


def gpu_peak_flops(name: str, precision: str, matmul_precision: str = "high") -> float | None:
    """A known GPU's dense peak for the trainer's precision ('bf16-mixed', '32-true', ...)."""
    for key, (half, tf32, fp32) in GPU_PEAKS.items():  # the more specific names come first
        if key in name:
            if "16" in str(precision):
                return half
            return fp32 if matmul_precision == "highest" else tf32
    return None


def _cpu_cache_file() -> Path:
    return cache_home() / "cpu_peak_flops.json"


def _cpu_key() -> str:
    return f"{platform.machine()}|{platform.processor()}|{os.cpu_count()}|{torch.get_num_threads()}|{torch.__version__}"


def measure_cpu_matmul_flops(sizes: tuple[int, ...] = (512, 1024), repeats: int = 8) -> float:
    """The best rate of `repeats` fp32 square matmuls of each size at the current thread count
    (~0.3 s); the smaller size fits the caches and is the faster one on many CPUs."""
    best_rate = 0.0
    for size in sizes:
        a, b = torch.randn(size, size), torch.randn(size, size)
        a @ b  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best_rate = max(best_rate, 2 * size**3 / (time.perf_counter() - start))
    return best_rate


@functools.cache
def cpu_peak_flops() -> float:
    """Measured once per machine and thread count, then read from ~/.cache/lmexp/cpu_peak_flops.json."""
    cached = _read_cpu_peaks().get(_cpu_key())
    if isinstance(cached, (int, float)):
        return float(cached)
    return _write_cpu_peak(measure_cpu_matmul_flops())


def raise_cpu_peak(achieved: float) -> float:
    """A run computed `achieved` FLOP/s, more than the cached peak (measured at a busy moment, or a
    matmul slower than the model's): measure again and keep the higher of that and `achieved`."""
    return _write_cpu_peak(max(measure_cpu_matmul_flops(), achieved))


def _read_cpu_peaks() -> dict:
    cached = read_json(_cpu_cache_file())
    return cached if isinstance(cached, dict) else {}


def _write_cpu_peak(value: float) -> float:
    cached = _read_cpu_peaks()
    cached[_cpu_key()] = value
    write_json(_cpu_cache_file(), cached)
    cpu_peak_flops.cache_clear()
    return value


def peak_flops(device: torch.device, precision: str, matmul_precision: str = "high") -> float | None:
    """Peak FLOP/s of one device: the table for known GPUs, a measured matmul rate on CPU."""
    if device.type == "cuda":
        return gpu_peak_flops(torch.cuda.get_device_name(device), precision, matmul_precision)
    if device.type == "cpu":
        return cpu_peak_flops()
    return None
