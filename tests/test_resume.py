"""lmexp/resume.py: `ckpt_path=last` resumes only a run of the same configuration, a checkpoint of
another configuration is refused (unless allowed), and the record lists what changed."""

from __future__ import annotations

import pytest

from conftest import SMALL_MODEL, TINY
from lmexp.errors import ConfigError
from conftest import read_summary
from lmexp.runs.resume import changed_keys, differing, identity
from lmexp.train import train


@pytest.fixture
def base(small_corpus) -> list[str]:
    return [*TINY, "data=text_files", f"data.train_files={small_corpus}/*.txt", "tokenizer=byte",
            *SMALL_MODEL["native"], "trainer.max_steps=4", "trainer.val_check_interval=2"]


def test_identity_leaves_out_continuation_and_speed_keys():
    run = {"seed": 1, "model": {"d_model": 32}, "data": {"batch_size": 8, "num_workers": 0}, "trainer": {"max_steps": 4},
           "logger": {"csv": {}}, "paths": {"output_dir": "a"}}
    other = {**run, "data": {"batch_size": 8, "num_workers": 4}, "trainer": {"max_steps": 99}, "paths": {"output_dir": "b"}}
    assert differing(identity(run), identity(other)) == []
    assert differing(identity(run), identity({**run, "model": {"d_model": 64}})) == ["model.d_model"]
    assert changed_keys(run, other) == ["data.num_workers", "trainer.max_steps"]


def test_last_resumes_the_newest_run_of_the_same_configuration(make_cfg, tmp_path, base, caplog):
    import torch

    train(make_cfg([*base, "seed=1"], run="one"))
    train(make_cfg([*base, "seed=2"], run="two"))  # newer, but another configuration
    last = tmp_path / "one" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    installed = checkpoint["lmexp"]["versions"]["torch"]
    checkpoint["lmexp"]["versions"]["torch"] = "2.12.1"  # as if trained on another torch
    torch.save(checkpoint, last)
    train(make_cfg([*base, "seed=1", "trainer.max_steps=6", "ckpt_path=last"], run="more"))
    assert f"resuming a checkpoint made with other package versions: torch 2.12.1 → {installed}" in caplog.text
    record = read_summary(tmp_path / "more")
    assert record["resumed_from"] == str(tmp_path / "one" / "checkpoints" / "last.ckpt")
    assert record["changed_keys"] == ["trainer.max_steps"]
    assert record["global_step"] == 6


def test_last_without_a_matching_run_names_the_newest_and_its_differences(make_cfg, base):
    train(make_cfg(base, run="one"))
    with pytest.raises(ConfigError) as err:
        train(make_cfg([*base, "model.d_model=48", "ckpt_path=last"], run="other"))
    message = str(err.value)
    assert "no run under" in message and "differs in model.d_model" in message and "allow_config_change" in message


def test_a_checkpoint_of_another_configuration_is_refused_unless_allowed(make_cfg, tmp_path, base):
    train(make_cfg(base, run="one"))
    changed = [*base, "optimizer.lr=0.5", "scheduler.warmup_steps=1", "trainer.max_steps=6",
               f"ckpt_path={tmp_path / 'one'}"]
    with pytest.raises(ConfigError, match="optimizer.lr, scheduler.warmup_steps differ"):
        train(make_cfg(changed, run="refused"))
    assert read_summary(tmp_path / "refused")["status"] == "failed"
    train(make_cfg([*changed, "allow_config_change=true"], run="allowed"))
    record = read_summary(tmp_path / "allowed")
    assert record["status"] == "completed"
    assert record["changed_keys"] == ["allow_config_change", "optimizer.lr", "scheduler.warmup_steps", "trainer.max_steps"]


def test_a_run_resumed_after_its_last_step_records_its_train_loss(make_cfg, tmp_path, base):
    """Killed after training finished, before its final evaluation: resumed from its last.ckpt, it
    trains no step, and its record still has the train/loss of the uninterrupted run."""
    train(make_cfg([*base, "trainer.deterministic=true"], run="whole"))
    train(make_cfg([*base, "trainer.deterministic=true", f"ckpt_path={tmp_path / 'whole'}"], run="again"))
    whole, again = read_summary(tmp_path / "whole"), read_summary(tmp_path / "again")
    assert again["resumed_from"] and again["global_step"] == whole["global_step"] == 4
    assert again["metrics"]["train/loss"] == whole["metrics"]["train/loss"]
    assert again["metrics"] == whole["metrics"]
