"""Causal LM with label smoothing: lmexp's CausalLM (its batches, predicted positions and metrics),
trained against a smoothed target.

What lmexp needs of an objective (lmexp/objectives/base.py, class Objective): attributes `name`,
`attention`, `labelled`, `extra_tokens`, `monitor`, `monitor_mode`; methods `bind`, `collate`,
`prepare_batch`, `loss`, `predicted`, `metrics`, `wrap_model`. Subclassing Objective,
TokenObjective or one of lmexp's objectives gives the ones you don't change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lmexp.errors import ConfigError
from lmexp.objectives.base import IGNORE
from lmexp.objectives.causal import CausalLM


class SmoothedLM(CausalLM):
    # name stays "causal_lm" (inherited): the run is still a causal LM, so `lmexp generate` and
    # callbacks=samples accept it. The metrics (val/loss, val/perplexity, ...) are CausalLM's,
    # over the unsmoothed targets, so runs compare with plain causal_lm runs.

    def __init__(self, label_smoothing: float = 0.1, **common) -> None:
        super().__init__(**common)  # attention, monitor, monitor_mode, predict
        if not 0 <= label_smoothing < 1:
            # A ConfigError is printed as is, in one line; any other exception from a constructor
            # becomes `error: objective: <its message>`.
            raise ConfigError(f"objective.label_smoothing={label_smoothing}: expected a number in [0, 1)")
        self.label_smoothing = label_smoothing

    def loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        return F.cross_entropy(logits.flatten(0, 1).float(), batch["labels"].flatten(), ignore_index=IGNORE,
                               label_smoothing=self.label_smoothing)
