"""Next-token prediction."""

from __future__ import annotations

import torch

from lmexp.errors import ConfigError
from lmexp.objectives.base import IGNORE, TokenObjective


class CausalLM(TokenObjective):
    """Each packed row holds block_size + 1 tokens; the model reads the first block_size and
    predicts the last block_size (as nanoGPT's x, y), so every position is a target."""

    name = "causal_lm"
    attention = "causal"
    extra_tokens = 1

    def __init__(self, predict: str = "all", **common) -> None:
        super().__init__(**common)
        if predict not in ("all", "last"):
            raise ConfigError(f"objective.predict must be 'all' or 'last', got '{predict}'")
        # "last": only the final token is a target (an answer after a prompt, e.g. `a b = c`).
        self.predict = predict

    def collate(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        labels = rows[:, 1:]
        if self.predict == "last":
            labels = torch.full_like(labels, IGNORE)
            labels[:, -1] = rows[:, -1]
        return {"input_ids": rows[:, :-1], "labels": labels}
