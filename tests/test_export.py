"""`lmexp export`: plain transformers loads the directory and computes lmexp's logits."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from conftest import SMALL_MODEL, TINY
from lmexp.build import build_model, build_objective
from lmexp.tools.cli import main as lmexp
from lmexp.data.tokenizers import build_tokenizer
from lmexp.errors import ConfigError
from lmexp.tools.export import export, save_tokenizer
from lmexp.runs.load import TrainedRun
from lmexp.train import train

TEXT = "To be, or not to be: that is the question.\nWhéther 'tis nobler <eos> in the mind"


def make_run(make_cfg, overrides: list[str], objective: str = "causal_lm") -> TrainedRun:
    """A TrainedRun with a randomly initialised model of the given options (no training needed)."""
    cfg = make_cfg([f"objective={objective}", *overrides])
    tokenizer = build_tokenizer("byte")
    lm_objective = build_objective(cfg)
    lm_objective.bind(tokenizer)
    model = build_model(cfg, tokenizer, lm_objective).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # every weight random, so a misplaced bias or norm cannot hide behind zeros and ones
        for parameter in model.parameters():
            parameter.normal_(0, 0.5)
    config = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))  # as checkpoints store it
    return TrainedRun(model, tokenizer, config, "elsewhere/last.ckpt", objective)


@pytest.mark.parametrize("overrides, objective, architecture", [
    (["model=gpt_tiny", *SMALL_MODEL["native"]], "causal_lm", "GPT2LMHeadModel"),
    (["model=gpt_tiny", *SMALL_MODEL["native"], "model.n_layers=2", "model.d_ff=48", "model.dropout=0.1"],
     "causal_lm", "GPT2LMHeadModel"),
    (["model=gpt_tiny", *SMALL_MODEL["native"], "model.bias=false"], "causal_lm", "GPT2LMHeadModel"),
    (["model=gpt_tiny", *SMALL_MODEL["native"], "model.activation=relu"], "causal_lm", "GPT2LMHeadModel"),
    (["model=gpt_tiny", *SMALL_MODEL["native"], "model.tie_embeddings=false"], "causal_lm", "GPT2LMHeadModel"),
    (["model=hf_gpt2", *SMALL_MODEL["hf_gpt2"]], "causal_lm", "GPT2LMHeadModel"),
    (["model=hf_llama", *SMALL_MODEL["hf_llama"]], "causal_lm", "LlamaForCausalLM"),
    (["model=hf_bert", *SMALL_MODEL["hf_bert"]], "masked_lm", "BertForMaskedLM"),
])
def test_exported_model_computes_lmexp_logits(make_cfg, tmp_path, overrides, objective, architecture):
    run = make_run(make_cfg, overrides, objective)
    assert export(run, tmp_path / "out") == architecture

    auto = AutoModelForCausalLM if objective == "causal_lm" else AutoModelForMaskedLM
    loaded = auto.from_pretrained(tmp_path / "out").eval()
    assert type(loaded).__name__ == architecture
    assert loaded.config.eos_token_id == run.tokenizer.eos_token_id
    ids = torch.randint(run.model.vocab_size, (3, run.model.max_seq_len), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = run.model(ids), loaded(input_ids=ids).logits
    assert (got - expected).abs().max().item() <= 1e-5

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert tokenizer(TEXT)["input_ids"] == run.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    card = (tmp_path / "out" / "README.md").read_text()
    assert architecture in card and objective in card and (tmp_path / "out" / "training_config.yaml").is_file()


@pytest.mark.parametrize("overrides, objective, option", [
    (["model=gpt_tiny", "model.positions=rotary"], "causal_lm", "model.positions=rotary"),
    (["model=gpt_tiny", "model.norm=false"], "causal_lm", "model.norm=false"),
    (["model=gpt_tiny", "model.norm_position=post"], "causal_lm", "model.norm_position=post: GPT-2 is pre-LN"),
    (["model=bert_tiny"], "masked_lm", "model.attention=bidirectional: a pre-LN encoder"),
    (["model=seed_encoder", *SMALL_MODEL["seed_encoder"]], "masked_lm", "model=SeedEncoder"),
])
def test_options_without_an_exact_equivalent_are_refused(make_cfg, tmp_path, overrides, objective, option):
    run = make_run(make_cfg, [*overrides, *SMALL_MODEL["native"][:1]], objective)
    with pytest.raises(ConfigError, match=f"^{option}.*export refused$"):
        export(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["byte", "char", "bpe", "wordpiece"])
def test_exported_tokenizer_encodes_like_lmexp(tmp_path, kind):
    texts = [TEXT * 3, "the mind to suffer the slings and arrows"] * 20
    tokenizer = build_tokenizer(kind, texts=texts, vocab_size=300, min_frequency=1)
    save_tokenizer(tokenizer, tmp_path, max_length=64)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast" and config["model_max_length"] == 64
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded(TEXT)["input_ids"] == tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert (loaded.mask_token, loaded.eos_token, loaded.pad_token_id) == ("<mask>", "<eos>", 0)


def test_export_cli_writes_a_run_with_its_model_card(make_cfg, tmp_path, small_corpus, capsys):
    train(make_cfg([*TINY, "data=text_files", f"data.train_files={small_corpus}/*.txt", "tokenizer=bpe",
                    "tokenizer.vocab_size=300", *SMALL_MODEL["native"]], run="trained"))
    capsys.readouterr()
    out = tmp_path / "exported"
    assert lmexp(["export", str(tmp_path / "trained"), str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"exported GPT2LMHeadModel to {out}"
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md"} <= \
        {f.name for f in out.iterdir()}
    card = (out / "README.md").read_text()
    summary = json.loads((tmp_path / "trained" / "summary.json").read_text())
    assert f"| val/perplexity | {summary['metrics']['val/perplexity']:.4f} |" in card
    assert "lmexp-train" in card and "AutoModelForCausalLM" in card

    # Writing over an existing export is refused, and so is a run without a checkpoint.
    assert lmexp(["export", str(tmp_path / "trained"), str(out)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {out}: exists and is not an empty directory"
    assert lmexp(["export", str(tmp_path), str(tmp_path / "other")]) == 1
    assert "not an lmexp run directory (no checkpoints/last.ckpt)" in capsys.readouterr().err


def test_classification_runs_load_and_are_refused(make_cfg, tmp_path, capsys):
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\n" + "".join(f"a {'good' if i % 2 else 'bad'} film {i},{i % 2}\n" for i in range(80)))
    train(make_cfg([*TINY, "objective=classification", "data=labelled_files", f"data.train_files={data}",
                    "data.max_length=32", "tokenizer=byte", *SMALL_MODEL["native"]], run="classifier"))
    capsys.readouterr()
    run = str(tmp_path / "classifier")
    for command, message in [(["export", run, str(tmp_path / "out")], "error: objective=classification: "),
                             (["generate", run], "needs a causal_lm run"),
                             (["fill-mask", run, "a <mask> film"], "needs a masked_lm run")]:
        assert lmexp(command) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
