"""Next-token prediction."""

from __future__ import annotations

import torch

from lmexp.objectives.base import TokenObjective


class CausalLM(TokenObjective):
    """Each packed row holds block_size + 1 tokens; the model reads the first block_size and
    predicts the last block_size (as nanoGPT's x, y), so every position is a target."""

    name = "causal_lm"
    attention = "causal"
    extra_tokens = 1

    def collate(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"input_ids": rows[:, :-1], "labels": rows[:, 1:]}
