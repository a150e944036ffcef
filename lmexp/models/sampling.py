"""Sampling from a causal LM: the prompt's tokens, the logits filter, and the token-by-token loop
(used by `lmexp generate` and the SampleText callback)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def prompt_ids(tokenizer, text: str) -> list[int]:
    """The prompt's tokens, encoded as the training text was (no special tokens added); an empty
    prompt is the end-of-document token, so the model starts a new document."""
    return tokenizer(text, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]


def sampling_filter(temperature: float, top_k: int | None, top_p: float | None):
    """transformers' warpers, in generate()'s order: scale by 1/temperature, keep the top_k
    logits, then the smallest set of tokens whose probabilities add up to top_p; the rest → -inf."""
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    warpers = LogitsProcessorList([TemperatureLogitsWarper(float(temperature))])
    if top_k is not None:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p is not None and top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    return warpers


@torch.no_grad()
def sample(
    model: nn.Module,
    ids: list[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    stop_id: int | None = None,
    on_token: Callable[[int], None] | None = None,
) -> list[int]:
    """Continue `ids` one token at a time and return the new tokens (`stop_id` included if met).

    Temperature 0 is greedy decoding. The model reads at most its max_seq_len last tokens (a
    sliding window, as nanoGPT's sample.py). Every step runs the model on the whole window, without
    a key/value cache: slower for long samples, but the same code for every lmexp model.
    """
    device = next(model.parameters()).device
    context = torch.tensor([ids], device=device)
    warpers = sampling_filter(temperature, top_k, top_p) if temperature > 0 else None
    new: list[int] = []
    for _ in range(max_new_tokens):
        logits = model(context[:, -model.max_seq_len:])[:, -1].float()
        if warpers is None:
            token = logits.argmax(dim=-1, keepdim=True)
        else:
            token = torch.multinomial(warpers(context, logits).softmax(dim=-1), 1, generator=generator)
        context = torch.cat([context, token], dim=1)
        new.append(token.item())
        if on_token is not None:
            on_token(new[-1])
        if new[-1] == stop_id:
            break
    return new
