"""lmexp/build.py: W&B never blocks or breaks a run it is not needed for."""

from __future__ import annotations

import pytest

from conftest import SMALL_MODEL, TINY
from conftest import read_summary
from lmexp.train import train
from lmexp.wandb_offline import find_offline_runs, read_offline_run


@pytest.fixture
def online(monkeypatch, tmp_path, small_corpus):
    """Online W&B asked for, with no credentials anywhere (no key, an empty home)."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / ".config" / "wandb"))
    yield [*TINY, "data=text_files", f"data.train_files={small_corpus}/*.txt", "tokenizer=byte",
            *SMALL_MODEL["native"], "trainer.max_steps=2", "trainer.val_check_interval=2",
            "logger=wandb", "logger.wandb.offline=false", "logger.wandb.init_timeout=3"]
    import wandb

    wandb.teardown()  # wandb keeps the settings of its first run per process: drop this test's online ones


def assert_logged_offline(run_dir) -> None:
    record = read_summary(run_dir)
    assert record["status"] == "completed"
    assert record["wandb"]["mode"] == "offline"
    (offline,) = find_offline_runs(run_dir / "wandb")  # read back: the whole run, finished cleanly
    run = read_offline_run(offline)
    assert run.run_id == record["wandb"]["run_id"] and run.exit_code == 0
    assert run.summary["test/loss"] == pytest.approx(record["metrics"]["test/loss"])


def test_online_without_credentials_falls_back_to_offline(make_cfg, tmp_path, online, caplog):
    train(make_cfg(online))
    assert_logged_offline(tmp_path / "run")
    assert any("no W&B credentials" in r.message for r in caplog.records)


def test_online_with_credentials_but_no_network_waits_briefly_then_logs_offline(make_cfg, tmp_path, online,
                                                                               monkeypatch, caplog):
    # A well-formed key: wandb tries to reach its server, which this machine cannot.
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    train(make_cfg(online))
    assert_logged_offline(tmp_path / "run")
    assert any("W&B online logging failed" in r.message for r in caplog.records)


def test_a_target_that_does_not_import_names_itself(make_cfg):
    from lmexp.build import build_datamodule, build_objective
    from lmexp.errors import ConfigError

    cfg = make_cfg([*TINY, "data.source._target_=mypkg_not_installed.Stories"])
    with pytest.raises(ConfigError) as err:
        build_datamodule(cfg, build_objective(cfg))
    assert str(err.value).startswith("data: cannot import mypkg_not_installed.Stories (")
    assert str(err.value).endswith("is its package installed, or on PYTHONPATH?")


@pytest.mark.parametrize("callbacks, has_bar", [("default", True), ("minimal", False), ("none", False)])
def test_a_progress_bar_only_where_the_callbacks_hold_one(make_cfg, callbacks, has_bar):
    from lmexp.build import build_callbacks, build_trainer

    cfg = make_cfg([f"callbacks={callbacks}", "logger=none"])
    trainer = build_trainer(cfg, [], build_callbacks(cfg))
    assert (trainer.progress_bar_callback is not None) == has_bar


def test_a_pretrained_tokenizer_that_cannot_load_is_one_line(make_cfg, small_corpus):
    from conftest import expect_config_error

    expect_config_error(make_cfg, [*TINY, "data=text_files", f"data.train_files={small_corpus}/*.txt",
                                   "tokenizer=pretrained", "tokenizer.name_or_path=gpt2"],
                        "tokenizer.name_or_path='gpt2'", "could not be loaded from the hub")
