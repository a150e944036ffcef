"""experiments/ and `lmexp reproduce` / `lmexp experiments`."""

from __future__ import annotations

import json
import math

import pytest

from conftest import SHARED_DATA, SMALL_MODEL, TINY
from lmexp.records import read_summary
from lmexp.reproduce import experiment_names, main, verdict
from lmexp.train import train

SHAKESPEARE = f"data.path={SHARED_DATA / 'tinyshakespeare'}"
QUICK = ["trainer.val_check_interval=1", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
         "trainer.enable_progress_bar=false", "callbacks=minimal", "logger=csv", "trainer.num_sanity_val_steps=0"]
ON_CPU = ["trainer.accelerator=cpu", "trainer.devices=1", "trainer.precision=32-true", "trainer.strategy=auto",
          "trainer.accumulate_grad_batches=1"]


def test_every_experiment_has_a_complete_paper_block(make_cfg):
    assert {"nanogpt_shakespeare_char_cpu", "nanogpt_shakespeare_char", "grokking_modular_addition",
            "seed_article_mlm", "gpt2_124m_owt", "cramming_bert"} <= set(experiment_names())
    for name in experiment_names():
        paper = make_cfg([f"experiment={name}"]).paper
        for key in ("title", "year", "metric", "tolerance", "direction", "budget", "hardware", "data"):
            assert paper.get(key) is not None, (name, key)
        assert "reported" in paper and "reference" in paper or paper.reported is not None, name


@pytest.mark.parametrize("name, overrides", [
    ("nanogpt_shakespeare_char_cpu", [SHAKESPEARE, "trainer.max_steps=2"]),
    ("nanogpt_shakespeare_char", [SHAKESPEARE, "trainer.max_steps=1", "data.batch_size=2", *ON_CPU]),
    ("grokking_modular_addition", ["trainer.max_steps=2"]),
    ("seed_article_mlm", [f"data.path={SHARED_DATA / 'wikitext2'}", "trainer.max_steps=1", "data.batch_size=2"]),
])
def test_experiment_runs_a_step(make_cfg, tmp_path, name, overrides):
    cfg = make_cfg([f"experiment={name}", *QUICK, *overrides])
    train(cfg)
    summary = read_summary(tmp_path / "run")
    assert summary["status"] == "completed"
    assert math.isfinite(summary["metrics"][cfg.paper.metric] if cfg.paper.metric in summary["metrics"]
                         else summary["metrics"]["val/loss"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gpt2_124m_owt", "cramming_bert"])
def test_big_experiments_run_a_step_on_substitute_data(make_cfg, tmp_path, small_corpus, name):
    substitute = ["data=text_files", f"data.train_files={small_corpus}/*.txt", "tokenizer=byte",
                  "data.block_size=32", "data.batch_size=2", "data.num_proc=null", "trainer.max_steps=1"]
    train(make_cfg([f"experiment={name}", *QUICK, *ON_CPU, *substitute]))
    assert read_summary(tmp_path / "run")["status"] == "completed"


def test_grokking_data_is_every_pair_once_and_predicts_only_the_answer(make_cfg):
    from hydra.utils import instantiate

    from lmexp.objectives.causal import CausalLM

    cfg = make_cfg(["experiment=grokking_modular_addition"])
    data = instantiate(cfg.data)
    data.prepare()
    train_rows, val_rows = data.blocks["train"], data.blocks["validation"]
    assert len(train_rows) == round(113 * 113 * 0.3) and len(train_rows) + len(val_rows) == 113 * 113
    pairs = {(a, b) for a, b, _, _ in train_rows.tolist()} | {(a, b) for a, b, _, _ in val_rows.tolist()}
    assert len(pairs) == 113 * 113
    assert all(c == (a + b) % 113 for a, b, _, c in train_rows.tolist())
    assert data.batch_size == len(train_rows)  # full batch
    batch = CausalLM(data.tokenizer, attention="causal", predict="last").collate(
        __import__("torch").from_numpy(train_rows[:4]))
    assert (batch["labels"][:, :-1] == -100).all() and batch["labels"][:, -1].tolist() == train_rows[:4, 3].tolist()


def test_verdict_directions_and_relative_tolerance(make_cfg):
    paper = make_cfg(["experiment=nanogpt_shakespeare_char_cpu"]).paper
    assert verdict(paper, 1.92)[2] and not verdict(paper, 1.94)[2]
    grok = make_cfg(["experiment=grokking_modular_addition"]).paper
    assert verdict(grok, 0.995)[2] and not verdict(grok, 0.9)[2]
    seed = make_cfg(["experiment=seed_article_mlm", "paper.reference=400.0"]).paper
    target, tolerance, passed = verdict(seed, 420.0)
    assert tolerance == pytest.approx(40.0) and passed
    unmeasured = make_cfg(["experiment=seed_article_mlm", "paper.reference=null"]).paper
    assert verdict(unmeasured, 420.0) == (None, None, None)


def test_experiments_lists_every_experiment(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps long names in a narrow terminal
    assert main(["experiments"]) == 0
    out = capsys.readouterr().out
    for name in experiment_names():
        assert name[:20] in out


def test_reproduce_stops_at_once_when_data_or_hardware_is_missing(capsys):
    assert main(["reproduce", "nanogpt_shakespeare_char_cpu"]) == 2
    err = capsys.readouterr().err
    assert "data.path" in err and "Tiny Shakespeare" in err
    assert main(["reproduce", "nanogpt_shakespeare_char", SHAKESPEARE]) == 2
    assert "GPU" in capsys.readouterr().err
    assert main(["reproduce", "cramming_bert"]) == 2
    assert "not produced by one lmexp run" in capsys.readouterr().err
    assert main(["reproduce", "no_such_experiment"]) == 2
    assert "grokking_modular_addition" in capsys.readouterr().err


def test_reproduce_runs_and_judges_against_the_paper(tmp_path, monkeypatch):
    monkeypatch.setenv("LMEXP_OUTPUT_ROOT", str(tmp_path))
    monkeypatch.setenv("LMEXP_CACHE_DIR", str(tmp_path / "cache"))
    code = main(["reproduce", "nanogpt_shakespeare_char_cpu", SHAKESPEARE, "trainer.max_steps=3", *QUICK])
    assert code == 1  # three steps do not reach the paper's 1.88
    [run] = list((tmp_path / "runs").iterdir())
    result = json.loads((run / "reproduction.json").read_text())
    assert result["passed"] is False and result["reported"] == 1.88
    assert result["obtained"] == read_summary(run)["metrics"]["val/loss"]


def test_reproduce_a_run_directory_gives_identical_metrics(make_cfg, tmp_path, small_corpus, monkeypatch, capsys):
    from lmexp.config import register_resolvers

    # A real CLI run (it has .hydra/), then its re-run from the saved config.
    import subprocess
    import sys

    original = tmp_path / "runs" / "original"
    args = [*TINY, "data=text_files", f"data.train_files={small_corpus}/*.txt", "tokenizer=byte",
            *SMALL_MODEL["native"], "trainer.deterministic=true", f"paths.output_root={tmp_path}",
            f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={original}"]
    subprocess.run([sys.executable, "-m", "lmexp.train", *args], check=True, capture_output=True)
    register_resolvers()
    assert main(["reproduce", str(original)]) == 0
    out = capsys.readouterr().out
    assert "every metric is identical" in out
    reruns = [p for p in (tmp_path / "runs").iterdir() if p.name != "original"]
    assert len(reruns) == 1 and read_summary(reruns[0])["metrics"] == read_summary(original)["metrics"]
