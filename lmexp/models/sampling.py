"""Sampling from a causal LM: the prompt's tokens, the logits filter, and the batched token-by-token
loop (used by `lmexp generate`, `lmexp rate` and the SampleText callback)."""

from __future__ import annotations

import random
from typing import Callable, Iterator

import torch
from torch import nn


def prompt_ids(tokenizer, text: str) -> list[int]:
    """The prompt's tokens, encoded as the training text was (no special tokens added); an empty
    prompt is the end-of-document token, so the model starts a new document."""
    return tokenizer(text, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]


def sampling_filter(temperature: float, top_k: int | None, top_p: float | None):
    """transformers' warpers, in generate()'s order: scale by 1/temperature, keep the top_k
    logits, then the smallest set of tokens whose probabilities add up to top_p; the rest → -inf.
    Each row of a batch is filtered on its own."""
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


def item_seeds(seed: int, count: int) -> list[int]:
    """The seed of each item's generator: the first `count` 63-bit numbers of random.Random(seed).
    Item k's seed depends only on (seed, k), and seeds S and S+1 share no item seed (as seed + k would)."""
    draw = random.Random(seed)
    return [draw.getrandbits(63) for _ in range(count)]


@torch.no_grad()
def sample(
    model: nn.Module,
    prompts: list[list[int]],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    stop_id: int | None = None,
    batch_size: int = 64,
    on_token: Callable[[int, int], None] | None = None,
) -> Iterator[list[int]]:
    """Continue each prompt (a list of token ids; one item per list) and yield its new tokens, item
    by item in order (`stop_id` included if met).

    Items are sampled `batch_size` at a time, one model call per step for the whole batch. Item k
    draws from its own generator seeded with item_seeds(seed, ...)[k], so its sample does not depend
    on what else is in the batch, up to float rounding: batched matmuls may differ in the last bits,
    which flips a token only where two probabilities (or a draw and a boundary) are that close. Keep
    batch_size, device and thread count fixed to reproduce samples bit for bit.
    Temperature 0 is greedy decoding. The model reads at most its max_seq_len last tokens (a sliding
    window, as nanoGPT's sample.py). `on_token(item, token)` is called with each new token as it
    comes (e.g. to stream a single item).

    Causal models see only the tokens at or before a position, so rows of different lengths are
    batched right-padded with no attention mask, each read at its own last position; any lmexp
    causal model (or plug-in with forward(input_ids) -> logits) works so. A model with
    `decoding_cache` and `decode` (the native Transformer) is run with a key/value cache while an
    item's context fits its max_seq_len: each step then computes one position per row instead of
    the whole window.
    """
    seeds = item_seeds(seed, len(prompts))
    for start in range(0, len(prompts), batch_size):
        chunk = range(start, min(start + batch_size, len(prompts)))
        yield from _sample_batch(model, [prompts[k] for k in chunk], list(chunk), max_new_tokens, temperature,
                                 top_k, top_p, [seeds[k] for k in chunk], stop_id, on_token)


def _sample_batch(model: nn.Module, prompts: list[list[int]], items: list[int], max_new_tokens: int,
                  temperature: float, top_k: int | None, top_p: float | None, seeds: list[int],
                  stop_id: int | None, on_token: Callable[[int, int], None] | None) -> list[list[int]]:
    """One batch of `sample`: every row's new tokens, in the rows' order."""
    device = next(model.parameters()).device
    # Row r's context is tokens[r, :lengths[r]]; the rest of the row is room for the new tokens.
    lengths = torch.tensor([len(ids) for ids in prompts], device=device)
    tokens = torch.zeros(len(prompts), int(lengths.max()) + max_new_tokens, dtype=torch.long, device=device)
    for r, ids in enumerate(prompts):
        tokens[r, :len(ids)] = torch.tensor(ids)
    generators = [torch.Generator(device).manual_seed(s) for s in seeds]
    warpers = sampling_filter(temperature, top_k, top_p) if temperature > 0 else None
    cached = callable(getattr(model, "decode", None)) and callable(getattr(model, "decoding_cache", None))
    # The cache needs no slot beyond the longest context this batch can reach.
    cache = model.decoding_cache(len(prompts), min(tokens.shape[1], model.max_seq_len)) if cached else None

    rows = list(range(len(prompts)))  # the batch's rows still sampling, by index into prompts
    new: list[list[int]] = [[] for _ in prompts]
    for step in range(max_new_tokens):
        logits = _next_logits(model, tokens, lengths, cache, prefill=step == 0)
        if warpers is None:
            chosen = logits.argmax(dim=-1)
        else:
            chosen = _draw(warpers(tokens, logits).softmax(dim=-1), [generators[r] for r in rows])
        tokens[torch.arange(len(rows), device=device), lengths] = chosen
        lengths += 1
        finished = []
        for i, (r, token) in enumerate(zip(rows, chosen.tolist())):
            new[r].append(token)
            if on_token is not None:
                on_token(items[r], token)
            finished.append(token == stop_id or step + 1 == max_new_tokens)
        if all(finished):
            break
        if any(finished):  # finished rows leave the batch
            keep = torch.tensor([not done for done in finished], device=device)
            rows = [r for r, done in zip(rows, finished) if not done]
            tokens, lengths = tokens[keep], lengths[keep]
            cache = None if cache is None else cache[keep]
    return new


def _draw(probs: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """One token per row of probs [rows, vocab], row i by one uniform number from generators[i]
    (inverse CDF): a row's token depends on its own generator only, and drawing a number per row
    is far cheaper than torch.multinomial per row (which draws one per vocabulary entry)."""
    uniform = torch.cat([torch.rand(1, generator=g, device=probs.device) for g in generators])
    cdf = probs.cumsum(dim=-1)
    total = cdf[:, -1:]  # 1 up to rounding
    # Strictly below the total, so the token found (the first whose cdf exceeds the point) has a
    # probability above 0: a filtered-out token's cdf equals its predecessor's.
    point = torch.minimum(uniform[:, None] * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, point, right=True)[:, 0]


def _next_logits(model: nn.Module, tokens: torch.Tensor, lengths: torch.Tensor, cache: torch.Tensor | None,
                 prefill: bool) -> torch.Tensor:
    """Each row's next-token logits [rows, vocab] (float32) after its context tokens[r, :lengths[r]].

    With a cache: the prompts are run once (prefill), then each step feeds only the newest token at
    its position. A row whose context has outgrown max_seq_len reads its last max_seq_len tokens at
    positions 0.. (the window slides), which a cache cannot hold: it is run on its whole window."""
    window = model.max_seq_len
    if cache is None:
        return _window_logits(model, tokens, lengths)
    rows = torch.arange(len(lengths), device=lengths.device)
    if prefill:
        width = min(int(lengths.max()), window)
        logits = model.decode(tokens[:, :width], torch.zeros_like(lengths), cache)
        logits = logits[rows, (lengths - 1).clamp(max=width - 1)].float()
    else:
        # A row past the window writes its (unused) newest token at the cache's last slot: in bounds.
        logits = model.decode(tokens[rows, lengths - 1, None], (lengths - 1).clamp(max=window - 1), cache)[:, 0].float()
    sliding = (lengths > window).nonzero().flatten()
    if len(sliding):
        logits[sliding] = _window_logits(model, tokens[sliding], lengths[sliding])
    return logits


def _window_logits(model: nn.Module, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each row's next-token logits from one forward over the rows' last max_seq_len tokens,
    left-aligned (the positions a row alone would have) and right-padded: a causal model's logits at
    a row's last real token do not depend on the padding after it."""
    starts = (lengths - model.max_seq_len).clamp(min=0)
    width = int((lengths - starts).max())
    columns = (starts[:, None] + torch.arange(width, device=tokens.device)).clamp(max=tokens.shape[1] - 1)
    logits = model(tokens.gather(1, columns))
    return logits[torch.arange(len(lengths), device=tokens.device), lengths - starts - 1].float()
