"""Plug-ins from a package of their own (tests/plugin_example, outside lmexp/): a model, a data
source, an objective and a callback, with their configs added by Hydra's search path, run through
the real `lmexp-train` command — a single run, a sweep, `lmexp compare` — and wrong plug-ins get the
same one-line errors as lmexp's own (README "Your own model, data and objective")."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import cli, read_summary, train_losses

PLUGIN = Path(__file__).resolve().parent / "plugin_example"
CONF = PLUGIN / "conf"
SEARCHPATH = f"hydra.searchpath=[file://{CONF}]"
PLUGINS = ["model=my_gru", "data=my_source", "objective=smoothed_lm"]
# 20 steps of a 32-wide GRU on bytes: the run trains in about a second; Python's imports dominate.
FAST = [
    "tokenizer=byte", "logger=csv", "callbacks=minimal", "data.batch_size=8",
    "trainer.max_steps=20", "trainer.val_check_interval=10", "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2", "trainer.log_every_n_steps=1", "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "trainer.accelerator=cpu",
    "optimizer.lr=1e-2", "scheduler.warmup_steps=2",
]
LM_METRICS = ("loss", "perplexity", "acc", "f1")
# datasets' progress bars while the data is tokenized (before a model is built); not error output.
PROGRESS = re.compile(r"^tokenizing \w+: ")


@pytest.fixture(autouse=True)
def plugin_importable(monkeypatch):
    """What a user does: put the package on PYTHONPATH (or pip install it); `cli` passes the
    environment on to `python -m lmexp.train`."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(PLUGIN), os.environ.get("PYTHONPATH")])))
    monkeypatch.syspath_prepend(str(PLUGIN))


def only_run(root: Path) -> Path:
    runs = list((root / "outputs" / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip() and not PROGRESS.match(line)]


# --- the contracts, in-process (cheap) ----------------------------------------------------------

def test_example_plugins_meet_the_contracts():
    import torch

    from lmexp.models import check_model
    from lmexp.objectives.base import check_objective
    from lmexp_plugin_example.model import TinyGRU
    from lmexp_plugin_example.objective import SmoothedLM
    from lmexp_plugin_example.source import SyntheticStories

    model = TinyGRU(vocab_size=50, hidden_size=8, max_seq_len=16)
    check_model(model, "TinyGRU", needs_encode=True)
    ids = torch.randint(0, 50, (2, 16))
    assert model(ids, None).shape == (2, 16, 50) and model.encode(ids, torch.ones_like(ids)).shape == (2, 16, 8)
    # Causal: changing a later token leaves the logits of earlier positions alone.
    later = ids.clone()
    later[:, 10:] = (later[:, 10:] + 1) % 50
    assert torch.allclose(model(ids)[:, :10], model(later)[:, :10])

    objective = SmoothedLM(attention="causal", label_smoothing=0.2)
    check_objective(objective, "SmoothedLM")
    batch = objective.collate(torch.randint(0, 50, (2, 17)))
    logits = torch.randn(2, 16, 50)
    plain = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten())
    smoothed = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), label_smoothing=0.2)
    assert objective.loss(logits, batch) == pytest.approx(smoothed.item()) and smoothed != plain

    corpus = SyntheticStories(num_documents=20, split={"val_fraction": 0.1, "test_fraction": 0.1}).load()
    assert set(corpus.splits) == {"train", "validation", "test"} and corpus.splits["train"].column_names == ["text"]
    again = SyntheticStories(num_documents=20, split={"val_fraction": 0.1, "test_fraction": 0.1}).load()
    assert again.fingerprint == corpus.fingerprint
    assert SyntheticStories(num_documents=20, seed=1).load().fingerprint != corpus.fingerprint


# --- through lmexp-train ------------------------------------------------------------------------

def test_plugin_run_through_lmexp_train(tmp_path, cache_dir):
    """hydra.searchpath adds the package's conf/; model, data, objective and callbacks are its own."""
    result = cli(SEARCHPATH, *PLUGINS, *FAST, "callbacks=my_callbacks", "model.hidden_size=32",
                 f"paths.cache_dir={cache_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run(tmp_path)
    summary = read_summary(run)
    assert summary["status"] == "completed" and summary["error"] is None
    for name in LM_METRICS:
        assert math.isfinite(summary["metrics"][f"val/{name}"]), name
    # The plug-ins were used: the model's parameters, the objective in the composed config.
    from lmexp_plugin_example.model import TinyGRU

    assert summary["num_parameters"] == sum(p.numel() for p in TinyGRU(vocab_size=262, hidden_size=32).parameters())
    config = (run / ".hydra" / "config.yaml").read_text()
    for target in ("lmexp_plugin_example.objective.SmoothedLM", "lmexp_plugin_example.source.SyntheticStories"):
        assert f"_target_: {target}" in config
    # The callback saw every training batch; lmexp's own callbacks (from callbacks/minimal) ran too.
    assert json.loads((run / "step_counter.json").read_text()) == {"batches": 20, "global_step": 20}
    assert (run / "checkpoints" / "last.ckpt").is_file() and summary["tokens_per_s"] > 0
    losses = train_losses(run)
    assert len(losses) == 20 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5, losses


def test_plugin_sweep_and_compare(tmp_path, cache_dir):
    """A sweep over a key of the plug-in model (configs added with --config-dir this time), then
    `lmexp compare` shows the two values."""
    result = cli("-m", "--config-dir", str(CONF), *PLUGINS, *FAST, f"paths.cache_dir={cache_dir}",
                 "model.hidden_size=16,32", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 jobs: 2 completed" in result.stdout
    (sweep,) = (tmp_path / "outputs" / "multiruns").iterdir()
    for job in ("0", "1"):
        assert read_summary(sweep / job)["status"] == "completed"

    table = tmp_path / "compare.csv"
    shown = subprocess.run([sys.executable, "-m", "lmexp.tools.cli", "compare", str(sweep), "--csv", str(table)],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "model.hidden_size" in shown.stdout and "2 runs" in shown.stdout
    rows = list(csv.DictReader(io.StringIO(table.read_text())))
    assert sorted(row["model.hidden_size"] for row in rows) == ["16", "32"]
    assert all(row["status"] == "completed" and math.isfinite(float(row["val/perplexity mean"])) for row in rows)


# The wrong plug-ins of lmexp_plugin_example/broken.py: the overrides (besides model=my_gru
# data=my_source) and the start of the expected line.
WRONG = {
    "no_max_seq_len": (["objective=smoothed_lm", "model._target_=lmexp_plugin_example.broken.NoContextGRU"],
                       "error: model: lmexp_plugin_example.broken.NoContextGRU lacks attribute max_seq_len "
                       "(see lmexp.models: the model contract)"),
    "bidirectional_under_causal_lm": (["objective=causal_lm", "model._target_=lmexp_plugin_example.broken.PeekingGRU"],
                                      "error: model=my_gru is a bidirectional encoder and cannot serve "
                                      "objective=causal_lm, which needs a causal decoder"),
    # my_gru.yaml states `attention: causal`, so this one is refused from the config, before anything loads.
    "causal_under_masked_lm": (["objective=masked_lm"],
                               "error: model=my_gru is a causal decoder and cannot serve objective=masked_lm, "
                               "which needs a bidirectional encoder"),
    "objective_without_loss": (["objective=smoothed_lm",
                                "objective._target_=lmexp_plugin_example.broken.NoLossObjective"],
                               "error: objective: lmexp_plugin_example.broken.NoLossObjective lacks method loss "
                               "(see lmexp.objectives.base.Objective)"),
    # Checked by doing, once the data is prepared and before training: one forward and one loss on real rows.
    "no_forward": (["objective=smoothed_lm", "model._target_=lmexp_plugin_example.broken.NoForwardGRU"],
                   "error: model: lmexp_plugin_example.broken.NoForwardGRU has no forward method (nn.Module's raises "
                   "NotImplementedError); expected forward(input_ids [B, T], attention_mask [B, T] | None) -> "
                   "logits [B, T, vocab_size]"),
    "hidden_states_for_logits": (["objective=smoothed_lm",
                                  "model._target_=lmexp_plugin_example.broken.HiddenStatesGRU"],
                                 "error: model: lmexp_plugin_example.broken.HiddenStatesGRU.forward returned a float32 "
                                 "tensor [2, 64, 64]; expected logits [B, T, vocab_size] = [2, 64, "),
    "loss_per_token": (["objective=smoothed_lm", "objective._target_=lmexp_plugin_example.broken.PerTokenLoss"],
                       "error: objective: lmexp_plugin_example.broken.PerTokenLoss.loss returned a float32 tensor "
                       "[128]; expected a scalar tensor (shape []), floating"),
}


def test_wrong_plugins_get_one_line_errors(tmp_path, cache_dir, make_cfg):
    """Each exits 1 with one line on stderr, no traceback, and records that line as its error.
    The commands run side by side: each is mostly Python's imports."""
    def run(name: str) -> subprocess.CompletedProcess:
        (tmp_path / name).mkdir()
        return cli(SEARCHPATH, "model=my_gru", "data=my_source", *FAST, f"paths.cache_dir={cache_dir}", *WRONG[name][0],
                   cwd=tmp_path / name)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(WRONG, pool.map(run, WRONG)))
    for name, result in results.items():
        expected = WRONG[name][1]
        lines = error_lines(result)
        assert result.returncode == 1, (name, result.stderr[-3000:])
        assert "Traceback" not in result.stderr + result.stdout, (name, result.stderr[-3000:])
        assert len(lines) == 1 and lines[0].startswith(expected), (name, lines)
        summary = read_summary(only_run(tmp_path / name))
        assert summary["status"] == "failed" and f"error: {summary['error']}" == lines[0], (name, summary["error"])

    assert "preprocessing" not in results["causal_under_masked_lm"].stdout  # no data was read
    # What the forward check caught, with its traceback, is in the run's log (the terminal had one line).
    log = (only_run(tmp_path / "loss_per_token") / "train.log").read_text()
    assert "Traceback" in log and "PerTokenLoss.loss returned" in log

    # Word for word the lines built-ins get, caught in their config: an encoder under causal_lm, a
    # decoder under masked_lm. (The compose API has no Hydra choices, so those lines name the
    # classes, Transformer and CausalLM, instead of the options.)
    from lmexp.config import validate
    from lmexp.errors import ConfigError

    def words(line: str) -> str:
        return re.sub(r"(model|objective)=[^ ,]+", r"\1=...", line)

    for name, builtin in (("bidirectional_under_causal_lm", ["model=bert_tiny", "objective=causal_lm"]),
                          ("causal_under_masked_lm", ["model=gpt_tiny", "objective=masked_lm"])):
        with pytest.raises(ConfigError) as err:
            validate(make_cfg(builtin))
        assert words(error_lines(results[name])[0]) == words(f"error: {err.value}"), name


def test_plugin_constructors_check_their_own_arguments():
    """A plug-in's ConfigError is printed as is, in one line, as lmexp's own are."""
    from lmexp.errors import ConfigError
    from lmexp_plugin_example.model import TinyGRU
    from lmexp_plugin_example.objective import SmoothedLM

    with pytest.raises(ConfigError, match=r"^objective.label_smoothing=1.5: expected a number in \[0, 1\)$"):
        SmoothedLM(attention="causal", label_smoothing=1.5)
    with pytest.raises(ConfigError, match=r"^model.attention=bidirectional: TinyGRU reads left to right"):
        TinyGRU(vocab_size=10, attention="bidirectional")
