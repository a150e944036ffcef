from pathlib import Path

import pytest
import wandb
from pytorch_lightning.loggers import WandbLogger

from lmexp.wandb_offline import find_offline_runs, read_offline_run

CONFIG = {"lr": 0.001, "model": {"d_model": 64, "layers": [2, 2]}, "name": "tiny", "big": "x" * 100_000}
LOSSES = [2.5, 1.75, 1.5]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Three real offline runs, made once for the module because each wandb.init takes seconds."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WANDB_SILENT", "true")
        env.setenv("WANDB_MODE", "offline")
        made = {}

        root = tmp_path_factory.mktemp("full")
        run = wandb.init(
            mode="offline",
            dir=root,
            project="proj",
            group="grp",
            name="display",
            job_type="train",
            tags=["a", "b"],
            config=CONFIG,  # "big" makes the run record span several 32 KiB blocks
        )
        for step, loss in enumerate(LOSSES):
            wandb.log({"val/loss": loss, "train/acc": step / 4})
        run.summary["best/val_loss"] = 1.5
        wandb.finish(exit_code=0)
        made["full"] = root

        root = tmp_path_factory.mktemp("failed")
        run = wandb.init(mode="offline", dir=root, project="proj", name="before")
        wandb.log({"val/loss": 3.0})
        run.name = "after"  # wandb writes a second, full run record
        wandb.log({"val/loss": 4.0})
        wandb.finish(exit_code=1)
        made["failed"] = root

        root = tmp_path_factory.mktemp("lightning")
        logger = WandbLogger(offline=True, save_dir=str(root), project="proj", name="pl")
        logger.log_hyperparams({"lr": 0.01, "optim": {"name": "adamw"}})
        for step, loss in zip([10, 20], LOSSES):
            logger.log_metrics({"val/loss": loss}, step=step)
        wandb.finish()
        made["lightning"] = root
    return made


def only_run(root: Path) -> Path:
    (run_dir,) = find_offline_runs(root)
    return run_dir


def test_full_run_reads_back(runs):
    run_dir = only_run(runs["full"])
    assert run_dir.name.startswith("offline-run-")
    run = read_offline_run(run_dir)

    assert run.path == run_dir
    assert run_dir.name.endswith(run.run_id)
    assert (run.project, run.group, run.name, run.job_type) == ("proj", "grp", "display", "train")
    assert run.tags == ["a", "b"]
    assert run.config == CONFIG
    assert [step["val/loss"] for step in run.history] == LOSSES
    assert [step["train/acc"] for step in run.history] == [0, 0.25, 0.5]
    assert [step["_step"] for step in run.history] == [0, 1, 2]
    assert run.summary["val/loss"] == LOSSES[-1]
    assert run.summary["best/val_loss"] == 1.5
    assert "_wandb" not in run.summary and "_wandb" not in run.config
    assert run.exit_code == 0


def test_wandb_file_path_works_too(runs):
    run_dir = only_run(runs["full"])
    (wandb_file,) = run_dir.glob("*.wandb")
    assert read_offline_run(wandb_file) == read_offline_run(run_dir)


def test_failed_renamed_run(runs):
    run = read_offline_run(only_run(runs["failed"]))
    assert run.exit_code == 1
    assert run.name == "after"
    assert [step["val/loss"] for step in run.history] == [3.0, 4.0]


def test_lightning_logger_run_reads_back(runs):
    run = read_offline_run(only_run(runs["lightning"]))
    assert (run.project, run.name) == ("proj", "pl")
    assert run.config == {"lr": 0.01, "optim": {"name": "adamw"}}
    assert [(s["trainer/global_step"], s["val/loss"]) for s in run.history] == [(10, 2.5), (20, 1.75)]
    assert run.summary["val/loss"] == 1.75
    assert run.exit_code == 0


def test_find_offline_runs_sorts_all_runs_below_root(runs):
    found = find_offline_runs(runs["full"].parent)
    assert found == sorted(found)
    assert {only_run(root) for root in runs.values()} <= set(found)


def copy_of_wandb_file(runs, tmp_path: Path) -> tuple[Path, bytes]:
    (source,) = only_run(runs["full"]).glob("*.wandb")
    return tmp_path / source.name, source.read_bytes()


def test_truncated_last_record_is_dropped(runs, tmp_path):
    # The exit record is the last one written; cutting the file inside it is what a crashed
    # writer leaves behind. The rest still reads, and the run counts as unfinished.
    target, data = copy_of_wandb_file(runs, tmp_path)
    target.write_bytes(data[:-3])
    run = read_offline_run(target)
    assert run.exit_code is None
    assert [step["val/loss"] for step in run.history] == LOSSES


def test_corrupt_record_names_the_file(runs, tmp_path):
    target, data = copy_of_wandb_file(runs, tmp_path)
    at = data.index(b"best/val_loss")
    target.write_bytes(data[:at] + b"B" + data[at + 1 :])
    with pytest.raises(ValueError, match="checksum mismatch") as error:
        read_offline_run(target)
    assert str(target) in str(error.value)


def test_not_a_wandb_file_names_the_file(tmp_path):
    target = tmp_path / "run-x.wandb"
    target.write_bytes(b"hello, world")
    with pytest.raises(ValueError, match="bad file header") as error:
        read_offline_run(target)
    assert str(target) in str(error.value)
