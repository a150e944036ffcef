"""`lmexp generate` / `lmexp fill-mask` and the SampleText callback: decoding is what it claims to be."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from conftest import SMALL_MODEL, TINY
from lmexp.tools.cli import main as lmexp
from lmexp.models.sampling import sample, sampling_filter
from lmexp.tools.generate import fill_mask
from lmexp.models.hf import HFModel
from lmexp.models.transformer import Transformer
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


def tiny_model(max_seq_len: int = 8, kind: str = "native") -> nn.Module:
    torch.manual_seed(0)
    if kind == "hf_gpt2":
        return HFModel("gpt2", vocab_size=50, max_seq_len=max_seq_len, attention="causal", n_layer=2, n_embd=16,
                       n_head=2).eval()
    return Transformer(vocab_size=50, max_seq_len=max_seq_len, d_model=16, n_layers=2, n_heads=2).eval()


@pytest.mark.parametrize("kind", ["native", "hf_gpt2"])
def test_greedy_decoding_is_step_by_step_argmax_over_a_cropped_context(kind):
    model = tiny_model(max_seq_len=8, kind=kind)
    prompt = [3, 1, 4, 1, 5]
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(20):  # runs past max_seq_len: the context slides
            ids.append(int(model(torch.tensor([ids[-8:]]))[0, -1].argmax()))
    assert sample(model, prompt, 20, temperature=0) == ids[len(prompt):]


def test_seeded_sampling_is_reproducible_and_stops_at_eos():
    model = tiny_model()

    def draw(seed: int) -> list[int]:
        return sample(model, [1, 2], 30, temperature=1.5, generator=torch.Generator().manual_seed(seed))

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)
    first = draw(7)
    stopped = sample(model, [1, 2], 30, temperature=1.5, generator=torch.Generator().manual_seed(7), stop_id=first[3])
    assert stopped == first[:first.index(first[3]) + 1]


@pytest.mark.parametrize("top_k, top_p, allowed", [
    (2, None, {0, 1}), (None, 0.7, {0, 1}), (None, 0.9, {0, 1, 2}), (3, 0.6, {0, 1}), (None, None, {0, 1, 2, 3}),
])
def test_top_k_and_top_p_never_leave_the_allowed_set(top_k, top_p, allowed):
    filtered = sampling_filter(1.0, top_k, top_p)(torch.zeros(1, 1, dtype=torch.long), PROBS.log()[None])
    assert set(torch.isfinite(filtered[0]).nonzero().flatten().tolist()) == allowed
    drawn = sample(FixedLogits(), [0], 400, temperature=1.0, top_k=top_k, top_p=top_p,
                   generator=torch.Generator().manual_seed(0))
    assert set(drawn) == allowed  # every allowed token comes up in 400 draws, nothing else does


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
