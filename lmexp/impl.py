"""Speed-only settings (conf/impl/, cramming's `impl` group): how fast a run computes, not what.

They are left out of a run's identity (lmexp.runs.record.NOT_RESULT_AFFECTING), so changing them
never makes a different experiment. `Impl` mirrors conf/impl/default.yaml; LMModule applies it.
"""

from __future__ import annotations

import ctypes
import inspect
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from lmexp.machine_cache import read_json, write_json

MATMUL_PRECISIONS = ("highest", "high", "medium")


@dataclass(frozen=True)
class Impl:
    # torch.compile the model for training steps (inductor; on CPU it generates C++/OpenMP kernels).
    # Validation and test run the eager model: no recompilation for their shapes and no_grad.
    compile: bool = False
    compile_mode: str | None = None  # torch.compile(mode=...): null, "max-autotune-no-cudagraphs", ...
    # Fused (one kernel over all parameters) Adam/AdamW step, where the optimizer has `fused`.
    fused_optimizer: bool = True
    threads: int | None = None  # torch.set_num_threads; null: torch's default (one per core)
    matmul_precision: str = "high"  # torch.set_float32_matmul_precision; "high" allows TF32 on GPUs
    # Peak FLOP/s of one device for train/mfu; null: a known GPU's bf16/tf32/fp32 peak, or on CPU a
    # measured fp32 matmul rate.
    peak_flops: float | None = None
    # Keep freed memory in the process (glibc malloc) instead of handing it back to the OS and
    # page-faulting it in again on the next step: see keep_freed_memory.
    keep_freed_memory: bool = True

    @classmethod
    def from_config(cls, node: Any) -> "Impl":
        """From the impl node (DictConfig or dict; None: the defaults); unknown keys are an error."""
        if node is None:
            return cls()
        values = dict(node.items())
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"impl: unknown key {unknown[0]} (known: {', '.join(sorted(known))})")
        impl = cls(**values)
        if impl.matmul_precision not in MATMUL_PRECISIONS:
            raise ValueError(f"impl.matmul_precision must be one of {MATMUL_PRECISIONS}, got {impl.matmul_precision}")
        return impl

    def apply_process_settings(self) -> None:
        """Process-wide torch settings."""
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        torch.set_float32_matmul_precision(self.matmul_precision)
        if self.keep_freed_memory:
            keep_freed_memory()

    def compiled(self, model: nn.Module, device: torch.device | None = None) -> Callable | None:
        """The model compiled for training on `device`, or None when compile is off."""
        if not self.compile:
            return None
        if device is None or device.type == "cpu":
            reuse_cpu_isa_probe()
        # dynamic=False: a batch of another size (an epoch's last) gets its own static graph instead
        # of turning the whole model into a slower dynamic-shape one.
        return torch.compile(model, mode=self.compile_mode, dynamic=False)

    def optimizer_kwargs(self, factory: Callable, amp_clipping: bool = False) -> dict[str, Any]:
        """Extra keyword arguments for the optimizer factory (a functools.partial of the class).

        `amp_clipping`: gradients are clipped under Lightning's mixed precision (16-mixed or
        bf16-mixed), which refuses fused optimizers (they unscale inside their step), so none is fused.
        """
        if amp_clipping:
            return {}
        target = getattr(factory, "func", factory)
        try:
            accepts_fused = "fused" in inspect.signature(target).parameters
        except (TypeError, ValueError):
            accepts_fused = False
        if self.fused_optimizer and accepts_fused and "fused" not in getattr(factory, "keywords", {}):
            return {"fused": True}
        return {}


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> None:
    """Every CPU training step allocates and frees the same large buffers (logits, activations,
    gradients). glibc's malloc serves blocks above a threshold it keeps adjusting (128 kB to 32 MB)
    with fresh mmaps and gives freed heap back to the OS once 2x that threshold is free at its top,
    so each step page-faults its buffers in again: about 5,600 faults a step at nanoGPT's CPU shape,
    8% of the step (benchmarks/overhead.py). Fixed thresholds (heap up to 32 MB a block, trim past
    1 GB free) keep the memory for the next step. Peak memory is unchanged; not glibc (macOS,
    musl): nothing to do."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_MMAP_THRESHOLD, 32 * 2**20)
    mallopt(M_TRIM_THRESHOLD, 2**30)


def reuse_cpu_isa_probe() -> None:
    """Inductor checks each vector ISA the CPU claims (AVX2, AVX-512, AMX) by building a probe library
    and loading it in a child Python, in every process that compiles for the CPU: about 3 s of each
    compiled run on a 2-core machine. The outcome depends only on the CPU, the compiler and torch,
    so it is kept beside inductor's own cache; when it was "every claimed ISA works", later runs tell
    inductor so through its `cpp.vec_isa_ok` setting instead of probing again."""
    from torch._inductor import config, cpp_builder, cpu_vec_isa
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    if config.cpp.vec_isa_ok is not None:  # set by the user (TORCHINDUCTOR_VEC_ISA_OK)
        return

    def valid_isas(assume_ok: bool | None) -> list[str]:
        config.cpp.vec_isa_ok = assume_ok
        cpu_vec_isa.valid_vec_isa_list.cache_clear()
        return [str(isa) for isa in cpu_vec_isa.valid_vec_isa_list()]

    claimed = valid_isas(True)  # from the CPU's flags alone, no probe
    key = {"torch": torch.__version__, "compiler": cpp_builder.get_cpp_compiler(), "claimed": claimed}
    record = Path(cache_dir()) / "lmexp-cpu-isa-probe.json"
    known = read_json(record)
    if isinstance(known, dict) and known.get("key") == key and known.get("works") == claimed:
        return  # vec_isa_ok stays True, and inductor's cached ISA list is the claimed one
    works = valid_isas(None)  # inductor's own probe; its cached outcome serves this run's compile
    write_json(record, {"key": key, "works": works})
