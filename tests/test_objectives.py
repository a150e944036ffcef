"""Collators, loss and predicted positions of lmexp/objectives/."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lmexp.data.tokenizers import build_tokenizer
from lmexp.errors import ConfigError
from lmexp.objectives.base import IGNORE
from lmexp.objectives.causal import CausalLM
from lmexp.objectives.masked import MaskedLM


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer("byte")


def test_causal_collate_shifts_by_one(tokenizer):
    rows = torch.arange(20).reshape(2, 10)
    batch = CausalLM(attention="causal").collate(rows)
    assert torch.equal(batch["input_ids"], rows[:, :-1]) and torch.equal(batch["labels"], rows[:, 1:])


def test_causal_objective_refuses_bidirectional_attention(tokenizer):
    with pytest.raises(ConfigError, match="objective.attention"):
        CausalLM(attention="bidirectional")


def test_loss_and_predicted_positions_skip_ignored_labels(tokenizer):
    objective = CausalLM(attention="causal")
    objective.bind(tokenizer)
    logits = torch.randn(2, 3, 7)
    labels = torch.tensor([[1, IGNORE, 3], [IGNORE, 5, 6]])
    batch = {"labels": labels}
    flat_logits, targets = objective.predicted(logits, batch)
    assert targets.tolist() == [1, 3, 5, 6]
    expected = F.cross_entropy(logits.reshape(-1, 7)[labels.flatten() != IGNORE], targets)
    assert torch.allclose(objective.loss(logits, batch), expected)


def test_masked_lm_follows_the_80_10_10_rule_and_never_masks_specials(tokenizer):
    torch.manual_seed(0)
    objective = MaskedLM(attention="bidirectional")
    objective.bind(tokenizer)
    special = sorted(set(tokenizer.all_special_ids))
    rows = torch.randint(len(special), len(tokenizer), (64, 512))
    rows[:, ::7] = tokenizer.eos_token_id
    rows[:, 3::11] = tokenizer.pad_token_id
    assert torch.equal(objective.collate(rows)["input_ids"], rows)  # masking happens on the device
    batch = objective.prepare_batch(objective.collate(rows))
    chosen = batch["labels"] != IGNORE
    assert torch.equal(batch["labels"][chosen], rows[chosen])
    assert not chosen[torch.isin(rows, torch.tensor(special))].any()
    maskable = ~torch.isin(rows, torch.tensor(special))
    share = chosen.sum() / maskable.sum()
    assert 0.14 < share < 0.16
    masked = (batch["input_ids"] == tokenizer.mask_token_id) & chosen
    unchanged = (batch["input_ids"] == rows) & chosen
    assert 0.78 < masked.sum() / chosen.sum() < 0.82
    assert 0.08 < unchanged.sum() / chosen.sum() < 0.12  # ~10% kept, plus the few random hits on itself
    assert torch.equal(batch["input_ids"][~chosen], rows[~chosen])


def test_masked_lm_bad_probabilities(tokenizer):
    with pytest.raises(ConfigError, match="mlm_probability"):
        MaskedLM(attention="bidirectional", mlm_probability=1.5)


def test_masked_lm_masks_are_reproducible_with_a_generator(tokenizer):
    objective = MaskedLM(attention="bidirectional")
    objective.bind(tokenizer)
    rows = torch.randint(6, len(tokenizer), (4, 64))
    first = objective.prepare_batch({"input_ids": rows}, torch.Generator().manual_seed(3))
    second = objective.prepare_batch({"input_ids": rows}, torch.Generator().manual_seed(3))
    assert torch.equal(first["input_ids"], second["input_ids"]) and torch.equal(first["labels"], second["labels"])
