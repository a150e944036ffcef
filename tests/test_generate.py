"""`lmexp generate` / `lmexp fill-mask` and the SampleText callback: decoding is what it claims to be."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from conftest import SMALL_MODEL, TINY
from lmexp.tools.cli import main as lmexp
from lmexp.models.bag_of_ngrams import BagOfNgrams
from lmexp.models.sampling import item_seeds, sample, sampling_filter
from lmexp.tools.generate import fill_mask
from lmexp.models.hf import HFModel
from lmexp.models.transformer import SeedEncoder, Transformer
from lmexp.runs.load import load_trained_run
from lmexp.train import train
from lmexp.wandb_offline import find_offline_runs, read_offline_run

# A hand-made next-token distribution over 4 tokens.
PROBS = torch.tensor([0.5, 0.3, 0.15, 0.05])


class FixedLogits(nn.Module):
    """A 'model' that predicts PROBS at every position."""

    max_seq_len = 64

    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Parameter(PROBS.log())

    def forward(self, input_ids: torch.Tensor, attention_mask=None) -> torch.Tensor:
        return self.logits.expand(*input_ids.shape, -1)


def tiny_model(max_seq_len: int = 8, kind: str = "native", **options) -> nn.Module:
    torch.manual_seed(0)
    if kind == "hf_gpt2":
        return HFModel("gpt2", vocab_size=50, max_seq_len=max_seq_len, attention="causal", n_layer=2, n_embd=16,
                       n_head=2).eval()
    if kind == "seed_encoder":
        return SeedEncoder(vocab_size=50, max_seq_len=max_seq_len, attention="causal", d_model=16, n_heads=2,
                           n_layers=2, dropout=0.0).eval()
    if kind == "ngrams":
        return BagOfNgrams(vocab_size=50, max_seq_len=max_seq_len, d_model=16, ngrams=3, buckets=64).eval()
    return Transformer(vocab_size=50, max_seq_len=max_seq_len, d_model=16, n_layers=2, n_heads=2, **options).eval()


class Uncached(nn.Module):
    """The same model seen only through forward(input_ids): the sampler's path for any model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.max_seq_len = model, model.max_seq_len

    def forward(self, input_ids: torch.Tensor, attention_mask=None) -> torch.Tensor:
        return self.model(input_ids)


def one(model: nn.Module, prompt: list[int], *args, **kwargs) -> list[int]:
    [new] = sample(model, [prompt], *args, **kwargs)
    return new


@pytest.mark.parametrize("kind", ["native", "hf_gpt2"])
def test_greedy_decoding_is_step_by_step_argmax_over_a_cropped_context(kind):
    model = tiny_model(max_seq_len=8, kind=kind)
    prompt = [3, 1, 4, 1, 5]
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(20):  # runs past max_seq_len: the context slides
            ids.append(int(model(torch.tensor([ids[-8:]]))[0, -1].argmax()))
    assert one(model, prompt, 20, temperature=0) == ids[len(prompt):]


def test_seeded_sampling_is_reproducible_and_stops_at_eos():
    model = tiny_model()

    def draw(seed: int) -> list[int]:
        return one(model, [1, 2], 30, temperature=1.5, seed=seed)

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)
    first = draw(7)
    stopped = one(model, [1, 2], 30, temperature=1.5, seed=7, stop_id=first[3])
    assert stopped == first[:first.index(first[3]) + 1]


# Prompts of different lengths: one token, shorter than the window (8), longer than it (the window
# slides from the start), and one that reaches the window while sampling.
PROMPTS = [[3, 1, 4, 1, 5], [2], list(range(1, 20)), [9, 8, 7, 6, 5, 4, 3], [7] * 12]


@pytest.mark.parametrize("kind, options", [
    ("native", {}), ("native", {"positions": "rotary"}), ("native", {"norm_position": "post"}),
    ("seed_encoder", {}), ("hf_gpt2", {}), ("ngrams", {}),
])
@pytest.mark.parametrize("sampling", [
    {"temperature": 0}, {"temperature": 1.5, "seed": 3}, {"temperature": 1.0, "top_k": 10, "top_p": 0.9, "seed": 1},
])
def test_a_batch_samples_what_each_prompt_samples_alone(kind, options, sampling):
    """Each item draws from its own generator, so batching changes nothing: a batch of all prompts,
    batches of two, and every prompt alone (batch_size=1) give the same tokens; and the native
    Transformer's key/value cache gives what its plain forward gives. Token equality holds here:
    batched matmuls may differ from single ones in the last float bits, which would flip a token
    only if two probabilities (or a draw and a boundary) were within ~1e-7 of each other."""
    model = tiny_model(max_seq_len=8, kind=kind, **options)
    alone = list(sample(model, PROMPTS, 20, batch_size=1, **sampling))
    assert [len(new) for new in alone] == [20] * len(PROMPTS)
    assert list(sample(model, PROMPTS, 20, **sampling)) == alone
    assert list(sample(model, PROMPTS, 20, batch_size=2, **sampling)) == alone
    if kind == "native":  # with the cache (above) and without
        assert list(sample(Uncached(model), PROMPTS, 20, **sampling)) == alone

    # A row that meets stop_id leaves the batch; the others go on as before.
    stop_id = alone[2][4]
    stopped = list(sample(model, PROMPTS, 20, stop_id=stop_id, **sampling))
    for new, full in zip(stopped, alone):
        assert new == (full[:full.index(stop_id) + 1] if stop_id in full else full)
    assert len(stopped[2]) <= 5


@pytest.mark.parametrize("options", [{}, {"positions": "rotary"}, {"norm_position": "post"}])
def test_decode_with_the_cache_gives_the_forward_logits(options):
    model = tiny_model(max_seq_len=16, **options)
    ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6, 5, 3], [2, 7, 1, 8, 2, 8, 1, 8, 2, 8]])
    with torch.no_grad():
        whole = model(ids)
        cache = model.decoding_cache(2, 16)
        # Row 0 prefills 4 tokens, row 1 six (rows at their own positions), then one token a step.
        steps = [model.decode(ids[:, :6], torch.tensor([0, 0]), cache)]
        steps += [model.decode(ids[:, t, None], torch.tensor([t, t]), cache) for t in range(6, 10)]
    assert torch.allclose(torch.cat(steps, dim=1), whole, atol=1e-5)
    with pytest.raises(ValueError, match="beyond the cache"):
        model.decode(ids[:, :1], torch.tensor([16, 0]), cache)


def test_item_seeds_depend_on_the_seed_and_the_place_only():
    assert item_seeds(5, 3) == item_seeds(5, 10)[:3]
    assert not set(item_seeds(5, 10)) & set(item_seeds(6, 10))  # unlike seed + k


@pytest.mark.parametrize("top_k, top_p, allowed", [
    (2, None, {0, 1}), (None, 0.7, {0, 1}), (None, 0.9, {0, 1, 2}), (3, 0.6, {0, 1}), (None, None, {0, 1, 2, 3}),
])
def test_top_k_and_top_p_never_leave_the_allowed_set(top_k, top_p, allowed):
    filtered = sampling_filter(1.0, top_k, top_p)(torch.zeros(1, 1, dtype=torch.long), PROBS.log()[None])
    assert set(torch.isfinite(filtered[0]).nonzero().flatten().tolist()) == allowed
    drawn = one(FixedLogits(), [0], 2000, temperature=1.0, top_k=top_k, top_p=top_p)
    assert set(drawn) == allowed  # every allowed token comes up in 2000 draws, nothing else does
    # ... as often as the filtered distribution says (3 standard deviations of 2000 draws: < 0.034).
    expected = filtered[0].softmax(-1)
    assert (torch.bincount(torch.tensor(drawn), minlength=4) / 2000).tolist() == pytest.approx(expected.tolist(), abs=0.034)


def test_temperature_sharpens_the_distribution():
    low = sampling_filter(0.5, None, None)(torch.zeros(1, 1, dtype=torch.long), PROBS.log()[None]).softmax(-1)[0]
    assert low.tolist() == pytest.approx((PROBS**2 / (PROBS**2).sum()).tolist())


def one_line_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_samples_during_training_and_the_generate_cli(make_cfg, tmp_path, small_corpus, capsys):
    train(make_cfg([*TINY, "data=text_files", f"data.train_files={small_corpus}/*.txt", "tokenizer=char",
                    *SMALL_MODEL["native"], "logger=wandb", "callbacks=samples", "callbacks.progress_bar=null",
                    "callbacks.samples.prompts=[ROMEO:,'']", "callbacks.samples.max_new_tokens=8"], run="causal"))
    causal_run = tmp_path / "causal"
    rows = [json.loads(line) for line in (causal_run / "samples.jsonl").read_text().splitlines()]
    # TINY validates twice (steps 6 and 12), two prompts each time.
    assert [(r["step"], r["prompt"]) for r in rows] == [(6, "ROMEO:"), (6, ""), (12, "ROMEO:"), (12, "")]
    assert all(r["sample"] for r in rows)
    history = read_offline_run(find_offline_runs(causal_run / "wandb")[0]).history
    assert any("samples" in row for row in history)
    capsys.readouterr()  # training's own output

    args = ["generate", str(causal_run), "--prompt", "ROMEO:", "--max-new-tokens", "30", "--temperature", "0.8",
            "--top-k", "20", "--top-p", "0.95", "--num-samples", "2", "--seed", "1"]
    assert lmexp(args) == 0
    first = capsys.readouterr().out
    assert lmexp(args) == 0
    assert capsys.readouterr().out == first
    samples = first.split("-" * 15 + "\n")
    assert len(samples) == 3 and samples[-1] == ""
    assert all(s.startswith("ROMEO:") for s in samples[:2]) and samples[0] != samples[1]
    # A lone sample, streamed, is item 0 of the batch above; --batch-size changes nothing printed.
    assert lmexp(args[:-4] + ["--seed", "1"]) == 0
    assert capsys.readouterr().out == samples[0] + "-" * 15 + "\n"
    assert lmexp([*args, "--batch-size", "1"]) == 0
    assert capsys.readouterr().out == first

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("ROMEO:\n\nJULIET:\n")
    assert lmexp(["generate", str(causal_run), "--prompt-file", str(prompts), "--max-new-tokens", "5",
                  "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    assert out.count("-" * 15) == 2 and "JULIET:" in out

    assert lmexp(["fill-mask", str(causal_run), "To be <mask>"]) == 1
    assert "lmexp generate" in one_line_error(capsys)
    assert lmexp(["generate", str(causal_run), "--top-p", "1.5"]) == 1
    assert "--top-p" in one_line_error(capsys)
    assert lmexp(["generate", str(causal_run), "--batch-size", "0"]) == 1
    assert "--batch-size must be >= 1" in one_line_error(capsys)
    assert lmexp(["generate", str(tmp_path / "missing")]) == 1
    assert "no such run directory or checkpoint file" in one_line_error(capsys)


def test_fill_mask_cli(make_cfg, tmp_path, small_corpus, capsys):
    train(make_cfg([*TINY, "data=text_files", f"data.train_files={small_corpus}/*.txt", "tokenizer=char",
                    "objective=masked_lm", "model=bert_tiny", *SMALL_MODEL["native"]], run="masked"))
    run = str(tmp_path / "masked")
    capsys.readouterr()  # training's own output
    text = "To be or <mask>ot to b<mask>"
    assert lmexp(["fill-mask", run, text, "--top-k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "<mask> 1 of 2:" and out[4] == "<mask> 2 of 2:"

    # The predictions are the softmax at the mask positions.
    loaded = load_trained_run(run)
    tokenizer = loaded.tokenizer
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    masks = [i for i, token in enumerate(ids) if token == tokenizer.mask_token_id]
    assert len(masks) == 2
    with torch.no_grad():
        top = loaded.model(torch.tensor([ids]))[0, masks].softmax(-1).topk(3)
    predictions = fill_mask(loaded.model, tokenizer, text, 3)
    for n, (best, indices, values) in enumerate(zip(predictions, top.indices, top.values)):
        assert [t for t, _ in best] == [tokenizer.decode([i]) for i in indices.tolist()]
        assert [p for _, p in best] == pytest.approx(values.tolist())
        assert out[4 * n + 1:4 * n + 4] == [f"  {p:8.2%}  {t!r}" for t, p in best]

    assert lmexp(["fill-mask", run, "To be or not to be"]) == 1
    assert "<mask>" in one_line_error(capsys)
    assert lmexp(["generate", run, "--prompt", "To be"]) == 1
    assert "lmexp fill-mask" in one_line_error(capsys)
