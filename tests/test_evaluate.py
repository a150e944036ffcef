"""lmexp-eval: a checkpoint alone is enough to evaluate, and gives the training run's numbers."""

from __future__ import annotations

import shutil

import pytest

from conftest import SMALL_MODEL, TINY, cli
from lmexp.build import build_datamodule, build_objective
from lmexp.errors import ConfigError
from lmexp.evaluate import evaluate
from conftest import read_summary
from lmexp.train import train


@pytest.fixture
def trained_run(make_cfg, tmp_path, small_corpus):
    train(make_cfg([*TINY, "data=text_files", f"data.train_files={small_corpus}/*.txt", "tokenizer=char",
                    *SMALL_MODEL["native"]], run="trained"))
    return tmp_path / "trained"


def test_eval_reproduces_the_final_metrics_from_the_checkpoint_alone(make_cfg, tmp_path, trained_run):
    trained = read_summary(trained_run)
    # Move the checkpoint away from its run directory: the tokenizer and config travel inside it.
    alone = tmp_path / "elsewhere" / "last.ckpt"
    alone.parent.mkdir()
    shutil.copy(trained_run / "checkpoints" / "last.ckpt", alone)
    metrics = evaluate(make_cfg([f"ckpt_path={alone}", "limit_batches=2"], config_name="eval", run="eval"))
    for key in ("val/loss", "val/perplexity", "val/acc", "val/f1", "test/loss", "test/perplexity"):
        assert metrics[key] == pytest.approx(trained["metrics"][key], rel=1e-5), key
    summary = read_summary(tmp_path / "eval")
    assert summary["status"] == "completed" and summary["checkpoint"] == str(alone)


def test_eval_accepts_a_run_directory_and_other_data(make_cfg, tmp_path, trained_run, small_corpus):
    metrics = evaluate(make_cfg([f"ckpt_path={trained_run}", "data=text_files",
                                 f"data.train_files={small_corpus}/doc0*.txt", "splits=[validation]"],
                                config_name="eval", run="eval"))
    assert set(metrics) == {"val/loss", "val/perplexity", "val/acc", "val/f1"}


def test_ddp_validation_counts_every_block_once(make_cfg, tmp_path, small_corpus):
    # Two CPU ranks (gloo). The whole validation and test splits have an odd number of blocks, which
    # Lightning's default sampler would pad by repeating one: the metrics must match a
    # single-process evaluation of the same checkpoint.
    data = ["data=text_files", f"data.train_files={small_corpus}/*.txt", "tokenizer=byte", "data.block_size=40"]
    cfg = make_cfg([*TINY, *data])
    datamodule = build_datamodule(cfg, build_objective(cfg))
    datamodule.prepare()
    blocks = {split: len(datamodule.blocks[split]) for split in ("validation", "test")}
    assert all(n % 2 == 1 for n in blocks.values()), blocks  # else nothing would be padded
    run = cli(*TINY, *data, *SMALL_MODEL["native"], "data.eval_batch_size=4", "trainer=ddp",
              "trainer.accelerator=cpu", "trainer.devices=2", "trainer.limit_val_batches=null",
              "trainer.limit_test_batches=null", "trainer.max_steps=4", "trainer.val_check_interval=2",
              "logger=none", f"hydra.run.dir={tmp_path / 'ddp'}", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    trained = read_summary(tmp_path / "ddp")
    metrics = evaluate(make_cfg([f"ckpt_path={tmp_path / 'ddp'}"], config_name="eval", run="eval"))
    for key in ("val/loss", "val/acc", "test/loss", "test/acc"):
        assert metrics[key] == pytest.approx(trained["metrics"][key], rel=1e-5), key


def test_eval_errors(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="ckpt_path"):
        evaluate(make_cfg([], config_name="eval", run="eval"))
    with pytest.raises(ConfigError, match="no such file"):
        evaluate(make_cfg([f"ckpt_path={tmp_path}/none.ckpt"], config_name="eval", run="eval"))
    bad = tmp_path / "bad.ckpt"
    bad.write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        evaluate(make_cfg([f"ckpt_path={bad}"], config_name="eval", run="eval"))


def test_eval_scores_wikitext_without_its_training_file(make_cfg, tmp_path, trained_run, small_corpus, capsys):
    # Scoring validation and test needs no training text: wiki.train.tokens is not there.
    wiki = tmp_path / "wikitext"
    wiki.mkdir()
    text = "\n".join(p.read_text() for p in sorted(small_corpus.glob("doc0*.txt")))
    (wiki / "wiki.valid.tokens").write_text(text[: len(text) // 2])
    (wiki / "wiki.test.tokens").write_text(text[len(text) // 2:])
    metrics = evaluate(make_cfg([f"ckpt_path={trained_run}", "data=wikitext2", f"data.path={wiki}", "limit_batches=2"],
                                config_name="eval", run="eval"))
    assert {"val/loss", "test/loss"} <= set(metrics)
    printed = capsys.readouterr().out
    assert "evaluated in" in printed and "steps in" not in printed  # it ran no training step


def test_training_without_training_data_is_one_line(make_cfg, tmp_path):
    wiki = tmp_path / "wikitext"
    wiki.mkdir()
    (wiki / "wiki.valid.tokens").write_text("a line of text\n" * 50)
    with pytest.raises(ConfigError, match="data.train_files=null: training needs training data"):
        train(make_cfg([*TINY, "data=wikitext2", f"data.path={wiki}", "data.train_files=null", "data.test_files=null",
                        "tokenizer=byte"]))
