"""Masked-token prediction with dynamic masking (BERT's 80/10/10 rule)."""

from __future__ import annotations

import torch

from lmexp.errors import ConfigError
from lmexp.objectives.base import IGNORE, TokenObjective


class MaskedLM(TokenObjective):
    """Masks a fresh random subset of each batch, on the device in `prepare_batch` (the collator
    only stacks rows), so every epoch sees new masks.

    Of the chosen positions, `mask_replace_prob` become the mask token, `random_replace_prob`
    a random token, the rest stay; special and pad tokens are never chosen.
    """

    name = "masked_lm"
    attention = "bidirectional"

    def __init__(self, mlm_probability: float = 0.15, mask_replace_prob: float = 0.8,
                 random_replace_prob: float = 0.1, **common) -> None:
        super().__init__(**common)
        if not 0 < mlm_probability < 1:
            raise ConfigError(f"objective.mlm_probability must be in (0, 1), got {mlm_probability}")
        if mask_replace_prob + random_replace_prob > 1:
            raise ConfigError("objective.mask_replace_prob + objective.random_replace_prob must be <= 1")
        self.mlm_probability = mlm_probability
        self.mask_replace_prob = mask_replace_prob
        self.random_replace_prob = random_replace_prob

    def bind(self, tokenizer, labels: list | None = None, label_counts: list[int] | None = None) -> None:
        if tokenizer.mask_token_id is None:
            raise ConfigError("objective=masked_lm needs a tokenizer with a mask token (tokenizer has none)")
        super().bind(tokenizer)
        self.mask_token_id = tokenizer.mask_token_id
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)

    def collate(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        # Masking waits for prepare_batch: there it runs on the device, in step order, which keeps
        # a resumed run's masks identical to an uninterrupted run's.
        return {"input_ids": rows}

    def prepare_batch(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        rows = batch["input_ids"]

        def draw(probability: float) -> torch.Tensor:
            return torch.rand(rows.shape, device=rows.device, generator=generator) < probability

        special = torch.isin(rows, self.special_ids.to(rows.device))
        chosen = draw(self.mlm_probability) & ~special
        labels = torch.where(chosen, rows, torch.full_like(rows, IGNORE))
        to_mask = chosen & draw(self.mask_replace_prob)
        # Of what is left, the share that gets a random token is random / (1 - mask).
        rest = 1.0 - self.mask_replace_prob
        to_random = chosen & ~to_mask & draw(self.random_replace_prob / rest if rest > 0 else 0.0)
        random_tokens = torch.randint(self.vocab_size, rows.shape, device=rows.device, generator=generator)
        input_ids = torch.where(to_mask, torch.full_like(rows, self.mask_token_id), rows)
        input_ids = torch.where(to_random, random_tokens, input_ids)
        return {**batch, "input_ids": input_ids, "labels": labels}
