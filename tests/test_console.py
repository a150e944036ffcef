"""A run's terminal carries progress, warnings that need action, and results: the known notices of
Lightning, Hydra, datasets and W&B that ask nothing of the user are gone (lmexp.console and the
calls that caused them). Only the command line shows the terminal, so this runs the CLI: a short
default job (W&B, the rich progress bar), its resume, and a joblib sweep."""

from __future__ import annotations

import re

from conftest import SHARED_DATA, cli

# Lines that say nothing actionable to an lmexp user, each once seen in a run's terminal.
NOISE = [
    r"`weights_only` was not set",  # Lightning, at every checkpoint save
    r"Epoch \d+/-\d",  # the progress bar's epoch count of a step-bounded run
    r"is validated against ConfigStore schema",  # Hydra, per joblib/submitit composition
    r"The dirpath has changed",  # Lightning, on resume
    r"You're resuming from a checkpoint that ended before the epoch ended",  # lmexp restores the data order
    r"was configured so 100%",  # Lightning's note on limit_*_batches=1.0
    r"Saving the dataset|Generating \w+ split|^Filter",  # datasets' bars
    r"anonymous setting has no effect",  # wandb 0.31, on every run (Lightning passes anonymous=None)
    r"GPU available:|TPU available:|💡 Tip:",  # Lightning's hardware and advertising lines
    r"isinstance\(treespec, LeafSpec\)|on_after_batch_transfer|does not have many workers",
    r"\x1b\[",  # colour codes in a pipe
    r"Traceback",
]
RUN = ["data=tinyshakespeare", f"data.path={SHARED_DATA / 'tinyshakespeare'}", "tokenizer=char",
       "model.d_model=32", "model.n_layers=1", "model.n_heads=2", "data.block_size=32", "data.batch_size=4",
       "trainer.val_check_interval=2", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2"]


def noise(output: str) -> list[str]:
    found = [line for line in output.splitlines() for pattern in NOISE if re.search(pattern, line)]
    # The progress bar counts up to its total, never past it (`270/265` after a resume).
    found += [m.group(0) for m in re.finditer(r"(\d+)/(\d+) ", output) if int(m.group(1)) > int(m.group(2))]
    return found


def test_default_job_its_resume_and_a_joblib_sweep_print_no_known_noise(tmp_path):
    first = cli(*RUN, "trainer.max_steps=3", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    resumed = cli(*RUN, "ckpt_path=last", "trainer.max_steps=6", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    sweep = cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=1,2", *RUN, "trainer.max_steps=2",
                cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    for name, result in (("default job", first), ("resume", resumed), ("joblib sweep", sweep)):
        output = result.stdout + result.stderr
        assert "final metrics" in output or "2 jobs: 2 completed" in output, output[-2000:]
        assert not noise(output), f"{name}: {noise(output)}"
    # The progress bar counts optimizer steps of the whole run, resumed or not.
    assert "Training" in resumed.stdout and "6/6" in resumed.stdout, resumed.stdout[-2000:]
