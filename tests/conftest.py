"""Shared fixtures: offline environment, Hydra compose, tiny training settings."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from lmexp.config import config_dir, register_resolvers

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# A few steps of a very small model (conf/debug/tiny.yaml): enough to see every piece run and the loss move.
TINY = ["debug=tiny"]
# Shrink each model option so every one trains in seconds.
SMALL_MODEL = {
    "native": ["model.d_model=32", "model.n_layers=1", "model.n_heads=2"],
    "ngrams": ["model.d_model=32", "model.buckets=1024"],
    "seed_encoder": ["model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.dropout=0.0"],
    "hf_gpt2": ["model.n_layer=1", "model.n_embd=32", "model.n_head=2"],
    "hf_bert": ["model.hidden_size=32", "model.num_hidden_layers=1", "model.num_attention_heads=2",
                "model.intermediate_size=64"],
    "hf_llama": ["model.hidden_size=32", "model.num_hidden_layers=1", "model.num_attention_heads=2",
                 "model.num_key_value_heads=1", "model.intermediate_size=64"],
}


@pytest.fixture
def fresh_hydra():
    """For a test that runs Hydra's entry point or sets its config in-process: nothing of it is left
    for later tests (`${hydra:...}` would resolve against it)."""
    yield
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().cfg = None
    GlobalHydra.instance().clear()


@pytest.fixture(autouse=True)
def offline_env(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One preprocessing cache for the session: runs over the same data reuse it."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def make_cfg(tmp_path, cache_dir):
    """compose(overrides) → a train config writing into tmp_path/run."""
    register_resolvers()

    def make(overrides: list[str], config_name: str = "train", run: str = "run") -> DictConfig:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            return compose(config_name, overrides=[
                f"paths.output_root={tmp_path}", f"paths.output_dir={tmp_path / run}",
                f"paths.cache_dir={cache_dir}", *overrides,
            ])
    return make


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """30 documents of real English (slices of Tiny Shakespeare) as text files."""
    text = (SHARED_DATA / "tinyshakespeare" / "input.txt").read_text()[:120_000]
    root = tmp_path_factory.mktemp("corpus")
    size = len(text) // 30
    for i in range(30):
        (root / f"doc{i:02d}.txt").write_text(text[i * size:(i + 1) * size])
    return root


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m lmexp.train ARGS`, offline, writing under cwd/outputs, on one thread: the test
    models are too small to gain from more, and a second thread contending for a busy CPU made
    each job several times slower (measured)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "LMEXP_OUTPUT_ROOT": str(cwd / "outputs"),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "lmexp.train", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def sweep_job(corpus: Path, cache: Path) -> list[str]:
    """Overrides for sweep jobs of a few seconds each: byte tokenizer, a tiny model, four steps."""
    return [
        "data=text_files", f"data.train_files={corpus}/*.txt", "tokenizer=byte", f"paths.cache_dir={cache}",
        *SMALL_MODEL["native"], *TINY, "trainer.max_steps=4", "trainer.val_check_interval=2", "logger=wandb",
    ]


# For lmexp's Optuna sweeper: a pruner that stops every trial at its first validation from step 4 on
# (perplexity is always > 1), so which trials it stops is known in advance, unlike a median or ASHA decision.
PRUNE_FROM_STEP_4 = ["hydra/sweeper/pruner=threshold", "hydra.sweeper.pruner.upper=1.0",
                     "hydra.sweeper.pruner.n_warmup_steps=4"]


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory, small_corpus, cache_dir) -> tuple[subprocess.CompletedProcess, Path]:
    """A real 2x2 sweep (optimizer.lr x seed, basic launcher, W&B offline): the command's result
    and the sweep directory."""
    root = tmp_path_factory.mktemp("sweep")
    result = cli("-m", *sweep_job(small_corpus, cache_dir), "logger=wandb", "optimizer.lr=1e-2,3e-3", "seed=1,2",
                 cwd=root)
    sweeps = list((root / "outputs" / "multiruns").iterdir())
    assert result.returncode == 0 and len(sweeps) == 1, result.stderr[-3000:]
    return result, sweeps[0]


def read_summary(run_dir: Path) -> dict:
    """A run's summary.json as written (the file itself, so tests check its format)."""
    import json

    return json.loads((Path(run_dir) / "summary.json").read_text())


def train_losses(run_dir: Path) -> list[float]:
    """train/loss per logged step, from the CSV logger."""
    with open(run_dir / "csv" / "metrics.csv") as f:
        return [float(row["train/loss"]) for row in csv.DictReader(f) if row.get("train/loss")]


def expect_config_error(make_cfg, overrides: list[str], *fragments: str) -> None:
    """Training with these overrides fails with a one-line ConfigError containing every fragment."""
    from lmexp.errors import ConfigError
    from lmexp.train import train

    with pytest.raises(ConfigError) as err:
        train(make_cfg(overrides))
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def start_cli(*args: str, cwd: Path) -> subprocess.Popen:
    """`cli` in the background: the command's process, its output merged into `.stdout`."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "LMEXP_OUTPUT_ROOT": str(cwd / "outputs"),
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "lmexp.train", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_record(job_dir: Path, status: str, timeout: float = 240) -> dict:
    """The job's summary.json once it says `status` (a sweep job says `running`, with its pid, at its start)."""
    import json
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            record = json.loads((job_dir / "summary.json").read_text())
        except (OSError, ValueError):
            record = {}
        if record.get("status") == status:
            return record
        time.sleep(0.2)
    raise AssertionError(f"{job_dir}: no record with status {status} after {timeout} s")


@pytest.fixture
def small_disk(tmp_path):
    """A real file system of a given size (tmpfs, mounted for the test), to fill up for real:
    `small_disk(mb, read_only=False) -> Path`. Needs root (CI runs as root); skips elsewhere."""
    mounted = []

    def mount(mb: float, read_only: bool = False) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        options = f"size={int(mb * 1024)}k" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here to fill a disk for real ({done.stderr.strip() or 'not root'})")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill_disk(disk: Path, leave_bytes: int) -> Path:
    """Fill `disk` with one file until `leave_bytes` stay free; remove the file to make room again."""
    import shutil

    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave_bytes))
    return filler
