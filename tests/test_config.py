"""Every shipped config composes; bad input is one clear line naming the key, before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException

from conftest import expect_config_error, SMALL_MODEL, TINY, cli
from lmexp.config import config_dir
from lmexp.records import read_summary

CONF = Path(config_dir())
GROUPS = ["model", "data", "tokenizer", "objective", "optimizer", "scheduler", "trainer", "logger",
          "callbacks", "debug"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group, option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes(make_cfg, group, option):
    cfg = make_cfg([f"{group}={option}"])
    assert cfg.get(group) is not None or group in ("debug", "logger", "callbacks")


def test_eval_config_composes(make_cfg):
    cfg = make_cfg(["ckpt_path=x.ckpt"], config_name="eval")
    assert cfg.ckpt_path == "x.ckpt" and cfg.splits == ["validation", "test"]


def test_unknown_group_option_lists_the_valid_ones(make_cfg):
    with pytest.raises(MissingConfigException) as err:
        make_cfg(["model=gpt_huge"])
    assert "gpt_tiny" in str(err.value) and "bert_tiny" in str(err.value)


def test_unknown_key_is_refused(make_cfg):
    with pytest.raises(ConfigCompositionException, match="optimizer.learning_rate"):
        make_cfg(["optimizer.learning_rate=0.1"])


def run_expecting(make_cfg, tmp_path, overrides: list[str], *fragments: str) -> None:
    expect_config_error(make_cfg, overrides, *fragments)
    summary = tmp_path / "run" / "summary.json"
    assert not summary.exists() or read_summary(tmp_path / "run")["status"] != "completed"


def test_missing_required_value(make_cfg, tmp_path):
    run_expecting(make_cfg, tmp_path, ["data=text_files"], "data.train_files", "missing")


def test_data_file_not_found(make_cfg, tmp_path):
    run_expecting(make_cfg, tmp_path, ["data=text_files", f"data.train_files={tmp_path}/nope/*.txt"],
                  "data.train_files", "no file matches")


def test_data_file_empty(make_cfg, tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    run_expecting(make_cfg, tmp_path, ["data=text_files", f"data.train_files={tmp_path}/empty.txt"],
                  "data.train_files", "no text")


def test_model_that_cannot_serve_the_objective(make_cfg, tmp_path):
    run_expecting(make_cfg, tmp_path, ["objective=masked_lm", "model=gpt_tiny"], "model=", "causal", "bidirectional")
    run_expecting(make_cfg, tmp_path, ["model=hf_bert"], "causal")


def test_tokenizer_vocab_larger_than_model(make_cfg, tmp_path, small_corpus):
    run_expecting(make_cfg, tmp_path, [*TINY, "data=text_files", f"data.train_files={small_corpus}/*.txt",
                                       "tokenizer=byte", "model.vocab_size=100"],
                  "model.vocab_size=100", "262")


def test_block_size_larger_than_context(make_cfg, tmp_path):
    run_expecting(make_cfg, tmp_path, ["data.block_size=512", "model.max_seq_len=256"],
                  "data.block_size=512", "model.max_seq_len=256")


def test_bad_model_shape_is_one_line(make_cfg, tmp_path, small_corpus):
    run_expecting(make_cfg, tmp_path, [*TINY, "data=text_files", f"data.train_files={small_corpus}/*.txt",
                                       "tokenizer=byte", "model.d_model=30", "model.n_heads=4"], "model.n_heads=4 must divide model.d_model=30")


def test_unreadable_and_missing_checkpoint(make_cfg, tmp_path, small_corpus):
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    base = [*TINY, "data=text_files", f"data.train_files={small_corpus}/*.txt", "tokenizer=byte",
            *SMALL_MODEL["native"]]
    run_expecting(make_cfg, tmp_path, [*base, f"ckpt_path={corrupt}"], f"ckpt_path={corrupt}", "not a readable checkpoint")
    run_expecting(make_cfg, tmp_path, [*base, f"ckpt_path={tmp_path}/missing.ckpt"], "no such file")
    run_expecting(make_cfg, tmp_path, [*base, "ckpt_path=last"], "ckpt_path=last")


def test_cli_config_error_is_one_line_without_traceback(tmp_path):
    result = cli("objective=masked_lm", "model=gpt_tiny", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "masked_lm" in errors[0]


def test_cli_unknown_option_and_key(tmp_path):
    result = cli("model=gpt_huge", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "gpt_tiny" in result.stderr and "bert_tiny" in result.stderr
    result = cli("trainer.max_stepz=3", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr and "max_stepz" in result.stderr


def test_cli_main_job_runs_and_prints_the_table(tmp_path):
    """The README's main command, shortened by debug=fast and a slice of the embedded corpus."""
    result = cli("debug=fast", "data.source.max_files=30", "tokenizer=byte", "callbacks=minimal",
                 "trainer.enable_progress_bar=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    for line in ("final metrics", "perplexity", "run directory:"):
        assert line in result.stdout
    runs = list((tmp_path / "outputs" / "runs").iterdir())
    assert len(runs) == 1 and read_summary(runs[0])["status"] == "completed"
    assert (runs[0] / ".hydra" / "overrides.yaml").is_file()
    assert str(runs[0].name) in result.stdout.replace("\n", "")
