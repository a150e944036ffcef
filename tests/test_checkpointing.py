"""Exact resume after a real SIGKILL, atomic checkpoint writes, interruption and divergence."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import SMALL_MODEL, TINY
from lmexp.checkpointing import AtomicCheckpointIO
from lmexp.errors import TrainingDiverged
from conftest import read_summary
from lmexp.train import train

# Dropout on (RNG must be restored), more than one epoch (sampler must continue mid-epoch and go on
# to the next epoch), last.ckpt every 7 steps (checkpoint.every_n_train_steps) between validations
# every 40; a token store of many shards (blocks and windows read across them).
RUN = ["data=text_files", "data.shard_chars=20000", "tokenizer=byte", "model.d_model=64", "model.n_layers=2", "model.n_heads=2",
       "model.dropout=0.1", "data.block_size=32", "data.batch_size=64", "trainer.max_steps=70",
       "trainer.val_check_interval=40", "checkpoint.every_n_train_steps=7", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
       "trainer.deterministic=true", "trainer.enable_progress_bar=false", "trainer.accelerator=cpu",
       "trainer.num_sanity_val_steps=0", "callbacks=minimal", "logger=csv", "seed=7"]


def start(run_dir: Path, corpus: Path, cache: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "LMEXP_CACHE_DIR": str(cache),
           "LMEXP_OUTPUT_ROOT": str(run_dir.parent)}
    args = [*RUN, f"data.train_files={corpus}/*.txt", f"hydra.run.dir={run_dir}", *extra]
    return subprocess.Popen([sys.executable, "-m", "lmexp.train", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def test_sigkill_then_resume_ends_with_identical_weights_and_metrics(tmp_path, small_corpus):
    cache = tmp_path / "cache"
    alone = start(tmp_path / "alone", small_corpus, cache)
    assert alone.wait(timeout=900) == 0, alone.stderr.read()[-3000:]

    killed = start(tmp_path / "killed", small_corpus, cache)
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not last.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # land somewhere after the first checkpoint, mid-epoch, likely mid-step
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    step_at_kill = torch.load(last, weights_only=True)["global_step"]
    assert 7 <= step_at_kill < 70 and (step_at_kill % 7 == 0 or step_at_kill % 40 == 0)

    # ckpt_path=last: the newest run of this configuration, the killed one.
    resumed = start(tmp_path / "resumed", small_corpus, cache, "ckpt_path=last")
    assert resumed.wait(timeout=900) == 0, resumed.stderr.read()[-3000:]

    expected, got = final_weights(tmp_path / "alone"), final_weights(tmp_path / "resumed")
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), f"{name} differs after resuming from step {step_at_kill}"
    a, b = read_summary(tmp_path / "alone"), read_summary(tmp_path / "resumed")
    assert b["resumed_from"] == str(last) and b["changed_keys"] == []
    assert a["metrics"] == b["metrics"]


def test_atomic_save_leaves_the_old_checkpoint_when_a_save_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}


def test_sigterm_saves_a_checkpoint_and_records_interrupted(tmp_path, small_corpus):
    run = tmp_path / "run"
    process = start(run, small_corpus, tmp_path / "cache", "trainer.max_steps=100000")
    csv = run / "csv" / "metrics.csv"
    deadline = time.time() + 240
    while not (csv.exists() and csv.stat().st_size > 200) and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) != 0
    summary = read_summary(run)
    assert summary["status"] == "interrupted"
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] > 0
    assert summary["error"] == (f"stopped by SIGTERM at step {saved['global_step']} (scancel, preemption or a time "
                                f"limit); last.ckpt saved: continue with ckpt_path={run} (a sweep job: the sweep's "
                                f"command with resume=true)")


def test_non_finite_loss_fails_the_run_and_keeps_the_last_good_checkpoint(make_cfg, tmp_path, small_corpus,
                                                                           monkeypatch):
    from lmexp.objectives.causal import CausalLM

    calls = []
    real_loss = CausalLM.loss

    def loss_that_diverges_at_step_6(self, logits, batch):
        if torch.is_grad_enabled():  # training steps, not the contract check before fit
            calls.append(1)
        loss = real_loss(self, logits, batch)
        return loss * float("nan") if len(calls) > 6 else loss

    monkeypatch.setattr(CausalLM, "loss", loss_that_diverges_at_step_6)
    overrides = [*TINY, "data=text_files", f"data.train_files={small_corpus}/*.txt", "tokenizer=byte",
                 *SMALL_MODEL["native"], "trainer.val_check_interval=4", "trainer.max_steps=40"]
    with pytest.raises(TrainingDiverged, match="at step 6"):
        train(make_cfg(overrides))
    summary = read_summary(tmp_path / "run")
    assert summary["status"] == "failed" and summary["error"].startswith("loss is nan at step 6")
    # The traceback went to the run's log file, not the terminal.
    assert "TrainingDiverged" in (tmp_path / "run" / "train.log").read_text()
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 4
    assert all(torch.isfinite(t).all() for t in saved["state_dict"].values() if t.is_floating_point())


class RunsCode:
    """Unpickling this runs a shell command: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_that_would_run_code_is_refused_at_every_entry_point(make_cfg, tmp_path, small_corpus,
                                                                          capsys):
    from lmexp.tools import export, generate
    from lmexp.checkpointing import read_checkpoint
    from lmexp.errors import ConfigError
    from lmexp.evaluate import evaluate
    from lmexp.runs.load import load_trained_run

    base = [*TINY, "data=text_files", f"data.train_files={small_corpus}/*.txt", "tokenizer=byte",
            "trainer.max_steps=2", "trainer.val_check_interval=2"]
    train(make_cfg([*base, *SMALL_MODEL["native"]], run="good"))
    checkpoint = torch.load(tmp_path / "good" / "checkpoints" / "last.ckpt", weights_only=True)
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({**checkpoint, "extra": RunsCode(marker)}, evil)

    def refused(message: str) -> None:
        assert "refused" in message and "posix.system" in message and "trust_checkpoint=true" in message, message
        assert "\n" not in message.strip()
        assert not marker.exists(), "the checkpoint ran code"

    for overrides in ([*base, *SMALL_MODEL["native"], f"ckpt_path={evil}"],
                      [*base, "model=from_run", f"model.init_from={evil}"]):
        with pytest.raises(ConfigError) as err:
            train(make_cfg(overrides, run="resume"))
        refused(str(err.value))
    with pytest.raises(ConfigError) as err:
        evaluate(make_cfg([f"ckpt_path={evil}"], config_name="eval", run="eval"))
    refused(str(err.value))
    with pytest.raises(ConfigError) as err:  # Lightning's own restore inside trainer.fit
        AtomicCheckpointIO().load_checkpoint(evil)
    refused(str(err.value))
    for command in (["generate", str(evil), "--max-new-tokens", "2"], ["export", str(evil), str(tmp_path / "hf")]):
        capsys.readouterr()
        assert (generate if command[0] == "generate" else export).main(command) == 1
        refused(capsys.readouterr().err)

    # A plain pickle (no torch zip container) is refused the same way.
    raw = tmp_path / "raw.ckpt"
    raw.write_bytes(pickle.dumps({**checkpoint, "extra": RunsCode(marker)}))
    with pytest.raises(ConfigError) as err:
        read_checkpoint(str(raw))
    refused(str(err.value))

    # The opt-in loads it, and so really runs its code: the refusals above are what kept it from running.
    read_checkpoint(str(evil), trust=True)
    assert marker.exists()

    # Tokenizer files come from the checkpoint too: their names cannot point outside the directory.
    torch.save({**checkpoint, "lmexp": {**checkpoint["lmexp"], "tokenizer_files": {"../escaped.json": "{}"}}}, evil)
    with pytest.raises(ConfigError, match="not a plain file name"):
        load_trained_run(str(evil))
    assert not (tmp_path / "escaped.json").exists()


@pytest.mark.parametrize("cadence, saved_at", [
    ("checkpoint.every_n_train_steps=2", [2, 4, 6]),
    ("checkpoint.every_n_minutes=1e-9", [1, 2, 3, 4, 5, 6]),  # every step: each is later than the deadline
])
def test_last_checkpoint_cadence_without_validation(make_cfg, tmp_path, small_corpus, monkeypatch, cadence, saved_at):
    import lmexp.checkpointing as checkpointing

    steps = []
    real_save_last = checkpointing.save_last

    def recording_save_last(trainer):
        steps.append(trainer.global_step)
        real_save_last(trainer)

    monkeypatch.setattr(checkpointing, "save_last", recording_save_last)
    train(make_cfg([*TINY, "data=text_files", f"data.train_files={small_corpus}/*.txt", "tokenizer=byte",
                    *SMALL_MODEL["native"], "trainer.max_steps=6", "trainer.val_check_interval=100", cadence]))
    assert steps == saved_at
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6


def test_a_full_disk_costs_one_line_and_the_last_good_checkpoint(make_cfg, tmp_path, small_corpus, small_disk, capfd):
    """A real full disk (a small tmpfs) at a checkpoint save: a one-line CannotWrite naming the folder
    and the room needed, a failed record, the earlier checkpoint whole; with room again the run resumes."""
    from conftest import fill_disk
    from lmexp.errors import CannotWrite

    disk = small_disk(24)
    overrides = [*TINY, "data=text_files", f"data.train_files={small_corpus}/*.txt", "tokenizer=byte",
                 *SMALL_MODEL["native"], "trainer.max_steps=4", "trainer.val_check_interval=4", "logger=none"]
    first = disk / "first"
    train(make_cfg([*overrides, f"paths.output_dir={first}"]))
    last = first / "checkpoints" / "last.ckpt"
    before = last.read_bytes()

    filler = fill_disk(disk, leave_bytes=len(before) // 2)  # room for the logs and the record, not a checkpoint
    more = [*overrides, f"ckpt_path={first}", "trainer.max_steps=8"]
    with pytest.raises(CannotWrite) as refused:
        train(make_cfg([*more, f"paths.output_dir={disk / 'second'}"]))
    line = str(refused.value)
    assert "\n" not in line and line.startswith(f"cannot write the checkpoint ") and str(disk / "second") in line
    assert "the disk is full; needs about" in line and "Traceback" not in capfd.readouterr().err
    summary = read_summary(disk / "second")
    assert summary["status"] == "failed" and summary["error"] == line
    assert last.read_bytes() == before and not list((disk / "second" / "checkpoints").glob("*.tmp"))

    filler.unlink()  # room again: the same command resumes from the last good checkpoint
    train(make_cfg([*more, f"paths.output_dir={disk / 'third'}"]))
    assert read_summary(disk / "third")["status"] == "completed"
    assert torch.load(disk / "third" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 8


def test_a_disk_with_no_room_or_read_only_fails_in_one_line(make_cfg, small_corpus, small_disk):
    from conftest import fill_disk
    from lmexp.errors import CannotWrite

    overrides = [*TINY, "data=text_files", f"data.train_files={small_corpus}/*.txt", "tokenizer=byte",
                 *SMALL_MODEL["native"], "logger=csv"]
    full = small_disk(1)
    fill_disk(full, leave_bytes=0)
    with pytest.raises(CannotWrite, match=rf"^cannot write .* to {full}.*: the disk is full"):
        train(make_cfg([*overrides, f"paths.output_dir={full / 'run'}"]))

    read_only = small_disk(1, read_only=True)
    with pytest.raises(CannotWrite, match=rf"^cannot write the run directory run to {read_only}: the file system is read-only"):
        train(make_cfg([*overrides, f"paths.output_dir={read_only / 'run'}"]))


def test_a_run_that_ends_before_its_first_validation_keeps_one_last_checkpoint(make_cfg, tmp_path, small_corpus):
    train(make_cfg([*TINY, "data=text_files", f"data.train_files={small_corpus}/*.txt", "tokenizer=byte",
                    *SMALL_MODEL["native"], "trainer.max_steps=2", "trainer.val_check_interval=5"]))
    # No second full copy (last-v1.ckpt) and, with no periodic validation, no best.ckpt (README).
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["last.ckpt"]
