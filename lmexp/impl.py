"""Speed-only settings (conf/impl/, cramming's `impl` group): how fast a run computes, not what.

They are left out of a run's identity (lmexp.runs.record.NOT_RESULT_AFFECTING), so changing them
never makes a different experiment. `Impl` mirrors conf/impl/default.yaml; LMModule applies it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, fields
from typing import Any, Callable

import torch
from torch import nn

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

    def compiled(self, model: nn.Module) -> Callable | None:
        """The model compiled for training, or None when compile is off."""
        if not self.compile:
            return None
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
