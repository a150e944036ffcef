"""End-to-end training in-process through Hydra's compose API: every model, objective,
tokenizer, data, optimizer, scheduler, logger, callbacks, trainer and debug option runs."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from conftest import SHARED_DATA, SMALL_MODEL, TINY, train_losses
from conftest import read_summary
from lmexp.train import train
from lmexp.wandb_offline import find_offline_runs, read_offline_run

LM_METRICS = ["loss", "perplexity", "acc", "f1"]


def corpus_overrides(small_corpus) -> list[str]:
    return ["data=text_files", f"data.train_files={small_corpus}/*.txt", "tokenizer=byte"]


def assert_learned(run_dir, by: float = 0.25) -> None:
    losses = train_losses(run_dir)
    assert len(losses) >= 10
    first, last = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
    assert last < first - by, f"loss did not decrease by {by}: {losses}"


def test_default_causal_lm_records_metrics_checkpoints_and_wandb(make_cfg, tmp_path):
    """The default job on the embedded corpus (few files), logged to offline W&B and CSV."""
    cfg = make_cfg([*TINY, "logger=wandb", "data.source.max_files=40", "tokenizer.vocab_size=512",
                    *SMALL_MODEL["native"], "tags=[smoke]"])
    value = train(cfg)
    run = tmp_path / "run"
    summary = read_summary(run)
    assert summary["status"] == "completed" and summary["error"] is None
    for stage in ("val", "test"):
        for name in LM_METRICS:
            assert math.isfinite(summary["metrics"][f"{stage}/{name}"])
    metrics = summary["metrics"]
    assert value == metrics["val/perplexity"]
    assert metrics["val/perplexity"] == pytest.approx(math.exp(metrics["val/loss"]), rel=1e-4)
    assert 0 <= metrics["val/acc"] <= 1 and 0 <= metrics["val/f1"] <= 1
    for key in ("config_hash", "data_fingerprint", "git", "versions", "wall_time_s", "tokens_per_s"):
        assert summary[key] is not None, key
    assert summary["versions"]["torch"] == torch.__version__
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "checkpoints" / "best.ckpt").is_file()
    assert (run / "tokenizer" / "tokenizer.json").is_file()
    assert_learned(run)

    # The offline W&B run holds the resolved config and the same final validation metrics.
    assert summary["wandb"]["mode"] == "offline"
    runs = find_offline_runs(run / "wandb")
    assert len(runs) == 1
    wb = read_offline_run(runs[0])
    assert wb.run_id == summary["wandb"]["run_id"]
    assert wb.exit_code == 0
    assert wb.job_type == "causal_lm" and "smoke" in wb.tags
    assert wb.config["model"]["d_model"] == 32
    logged = [row for row in wb.history if "val/perplexity" in row]
    assert logged, "no val/ metrics in the W&B history"
    assert logged[-1]["val/perplexity"] == pytest.approx(metrics["val/perplexity"], rel=1e-5)
    assert any("train/tokens_per_s" in row for row in wb.history)
    assert any("train/lr" in row for row in wb.history)


@pytest.mark.parametrize("model, size", [
    ("gpt_tiny", "native"), ("gpt_small", "native"), ("hf_gpt2", "hf_gpt2"), ("hf_llama", "hf_llama"),
    ("bag_of_ngrams", "ngrams"),
])
def test_causal_models_train(make_cfg, tmp_path, small_corpus, model, size):
    train(make_cfg([*TINY, *corpus_overrides(small_corpus), f"model={model}", *SMALL_MODEL[size]]))
    assert read_summary(tmp_path / "run")["status"] == "completed"
    assert_learned(tmp_path / "run")


@pytest.mark.parametrize("model, size", [
    ("bert_tiny", "native"), ("bert_base", "native"), ("seed_encoder", "seed_encoder"), ("hf_bert", "hf_bert"),
])
def test_masked_models_train(make_cfg, tmp_path, small_corpus, model, size):
    train(make_cfg([*TINY, *corpus_overrides(small_corpus), "objective=masked_lm", f"model={model}",
                    *SMALL_MODEL[size]]))
    summary = read_summary(tmp_path / "run")
    assert summary["status"] == "completed"
    assert all(math.isfinite(summary["metrics"][f"val/{m}"]) for m in LM_METRICS)
    assert_learned(tmp_path / "run")


@pytest.mark.parametrize("tokenizer", [
    "tokenizer=byte", "tokenizer=char", "tokenizer=bpe tokenizer.vocab_size=400",
    "tokenizer=wordpiece tokenizer.vocab_size=400",
])
def test_tokenizers_train(make_cfg, tmp_path, small_corpus, tokenizer):
    overrides = [*TINY, *corpus_overrides(small_corpus), *SMALL_MODEL["native"], *tokenizer.split()]
    train(make_cfg(overrides))
    assert_learned(tmp_path / "run")


def test_pretrained_tokenizer_from_a_previous_run(make_cfg, tmp_path, small_corpus):
    base = [*TINY, *corpus_overrides(small_corpus), *SMALL_MODEL["native"]]
    train(make_cfg([*base, "tokenizer=char"], run="first"))
    train(make_cfg([*base, "tokenizer=pretrained", f"tokenizer.name_or_path={tmp_path / 'first' / 'tokenizer'}"]))
    first, second = read_summary(tmp_path / "first"), read_summary(tmp_path / "run")
    assert second["status"] == "completed"
    # Same data, same tokenizer, same seed: the same model.
    assert second["metrics"]["val/loss"] == pytest.approx(first["metrics"]["val/loss"], rel=1e-5)


@pytest.mark.parametrize("data", [
    ["data=default", "data.source.max_files=25", "tokenizer=byte"],
    ["data=text_files", "data.document=line", "tokenizer=char"],
    ["data=hub", "data.path=text", "tokenizer=char"],
    ["data=tinyshakespeare", f"data.path={SHARED_DATA / 'tinyshakespeare'}", "tokenizer=char"],
    ["data=wikitext2", f"data.path={SHARED_DATA / 'wikitext2'}",
     "data.train_files=wiki.valid.tokens", "data.val_files=null", "tokenizer=byte"],
])
def test_data_options_train(make_cfg, tmp_path, small_corpus, data):
    overrides = [*TINY, *SMALL_MODEL["native"], *data]
    if "data=text_files" in data:
        overrides.append(f"data.train_files={small_corpus}/*.txt")
    if "data=hub" in data:
        overrides.append(f"data.data_files={{train:'{small_corpus}/doc0*.txt'}}")
    train(make_cfg(overrides))
    summary = read_summary(tmp_path / "run")
    assert summary["status"] == "completed" and "test/loss" in summary["metrics"]
    assert_learned(tmp_path / "run")


def csv_column(run_dir, name: str) -> list[float]:
    import csv

    with open(run_dir / "csv" / "metrics.csv") as f:
        return [float(row[name]) for row in csv.DictReader(f) if row.get(name)]


def optimizer_state_keys(run_dir) -> set[str]:
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["optimizer_states"][0]["state"]
    return set(next(iter(state.values())))


def tensorboard_scalars(run_dir) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list(run_dir.rglob("events.out.tfevents.*"))
    assert events, "no tensorboard event file"
    accumulator = EventAccumulator(str(events[0].parent))
    accumulator.Reload()
    return set(accumulator.Tags()["scalars"])


# Each option with what it must visibly do (beyond completing).
OPTION_EFFECTS = {
    "optimizer=adam": lambda run, s, logs: optimizer_state_keys(run) == {"step", "exp_avg", "exp_avg_sq"},
    "optimizer=sgd": lambda run, s, logs: optimizer_state_keys(run) == {"momentum_buffer"},
    # linear: the rate falls after warmup, to 0 at the end; constant: flat after warmup.
    "scheduler=linear scheduler.warmup_steps=2": lambda run, s, logs: (
        (lrs := csv_column(run, "train/lr"))[2:] == sorted(lrs[2:], reverse=True) and lrs[-1] <= 0.11 * max(lrs)),
    "scheduler=constant": lambda run, s, logs: len(set(csv_column(run, "train/lr")[2:])) == 1,
    "logger=tensorboard": lambda run, s, logs: {"train/loss", "val/loss"} <= tensorboard_scalars(run),
    "logger=none": lambda run, s, logs: not (run / "csv").exists() and not (run / "wandb").exists(),
    # default: the best checkpoint by the monitored metric and the throughput in the record.
    "callbacks=default trainer.enable_progress_bar=true": lambda run, s, logs: (
        (run / "checkpoints" / "best.ckpt").is_file() and s["tokens_per_s"] > 0 and s["best"]["metric"] == "val/perplexity"),
    # none: no checkpoint callback (so no checkpoints) and no throughput.
    "callbacks=none": lambda run, s, logs: not (run / "checkpoints").exists() and s["tokens_per_s"] is None,
    "trainer=cpu": lambda run, s, logs: torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)[
        "lmexp"]["config"]["trainer"]["accelerator"] == "cpu",
    "debug=fast": lambda run, s, logs: s["global_step"] == 4,
    # overfit: the same few batches again and again, so the training loss falls far.
    "debug=overfit trainer.max_steps=40 trainer.val_check_interval=20": lambda run, s, logs: (
        (losses := train_losses(run))[-1] < 0.7 * losses[0]),
    "debug=profile trainer.max_steps=12": lambda run, s, logs: "Profiler Report" in logs and "run_training_batch" in logs,
}


@pytest.mark.parametrize("choice", list(OPTION_EFFECTS))
def test_other_group_options_run_and_take_effect(make_cfg, tmp_path, small_corpus, caplog, choice):
    caplog.set_level("INFO")
    train(make_cfg([*TINY, *corpus_overrides(small_corpus), *SMALL_MODEL["native"], *choice.split()]))
    run = tmp_path / "run"
    summary = read_summary(run)
    assert summary["status"] == "completed"
    assert OPTION_EFFECTS[choice](run, summary, caplog.text), f"{choice}: no visible effect in {sorted(p.name for p in run.iterdir())}"


def test_second_identical_run_skips_preprocessing(make_cfg, tmp_path, small_corpus):
    # A cache of its own: the session's shared one may hold this store already (block size is not in its key).
    base = [*TINY, *corpus_overrides(small_corpus), *SMALL_MODEL["native"], "tokenizer=bpe",
            "tokenizer.vocab_size=333", "trainer.max_steps=2", f"paths.cache_dir={tmp_path / 'cache'}"]
    train(make_cfg(base, run="first"))
    train(make_cfg(base, run="second"))
    first = read_summary(tmp_path / "first")["preprocessing"]
    second = read_summary(tmp_path / "second")["preprocessing"]
    assert not first["cache_hit"] and second["cache_hit"]
    assert first["tokenizer_text_bytes"] > 0 and first["tokenizer_text_bytes"] == second["tokenizer_text_bytes"]
    # One token store serves every block size; anything that changes the tokens changes the key.
    train(make_cfg([*base, "data.block_size=16"], run="third"))
    assert read_summary(tmp_path / "third")["preprocessing"]["cache_hit"]
    train(make_cfg([*base, "tokenizer.vocab_size=300"], run="fourth"))
    assert not read_summary(tmp_path / "fourth")["preprocessing"]["cache_hit"]


def test_resume_continues_step_optimizer_and_wandb_run(make_cfg, tmp_path, small_corpus):
    base = [*TINY, *corpus_overrides(small_corpus), *SMALL_MODEL["native"], "logger=wandb",
            "callbacks=minimal", "trainer.val_check_interval=4"]
    train(make_cfg([*base, "trainer.max_steps=8"], run="first"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == 8 and saved["optimizer_states"][0]["state"]
    train(make_cfg([*base, "trainer.max_steps=12", f"ckpt_path={tmp_path / 'first'}"]))
    first, second = read_summary(tmp_path / "first"), read_summary(tmp_path / "run")
    assert second["status"] == "completed" and second["global_step"] == 12
    assert second["resumed_from"] == str(last)
    assert second["wandb"]["run_id"] == first["wandb"]["run_id"]
    # The scheduler went on from step 8, not from a fresh warmup.
    resumed = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["lr_schedulers"][0]["last_epoch"] == 12


def test_ckpt_path_last_finds_the_newest_run(make_cfg, tmp_path, small_corpus):
    base = [*TINY, *corpus_overrides(small_corpus), *SMALL_MODEL["native"], "trainer.max_steps=4",
            "trainer.val_check_interval=2"]
    train(make_cfg(base, run="runs/a"))
    train(make_cfg([*base, "trainer.max_steps=6", "ckpt_path=last"], run="runs/b"))
    assert read_summary(tmp_path / "runs" / "b")["resumed_from"].endswith("runs/a/checkpoints/last.ckpt")


def test_failed_run_is_recorded_as_failed(make_cfg, tmp_path, small_corpus, monkeypatch):
    from lmexp.module import LMModule

    def explode(self, batch, batch_idx):
        raise RuntimeError("boom at step 0")

    monkeypatch.setattr(LMModule, "training_step", explode)
    with pytest.raises(RuntimeError, match="boom"):
        train(make_cfg([*TINY, *corpus_overrides(small_corpus), *SMALL_MODEL["native"], "logger=wandb"]))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "boom at step 0" in summary["error"]
    wb = read_offline_run(find_offline_runs(tmp_path / "run" / "wandb")[0])
    assert wb.exit_code == 1


def test_final_table_keeps_names_and_numbers_whole_at_80_columns(monkeypatch, capsys, tmp_path):
    from lmexp.runs.record import RunRecord, print_results

    monkeypatch.setenv("COLUMNS", "80")
    metrics = {f"{stage}/{name}": value for stage in ("val", "test")
               for name, value in (("loss", 12.345678), ("perplexity", 229_345.123456), ("acc", 0.123456),
                                   ("f1", 0.5), ("precision", 0.25), ("recall", 0.75), ("mcc", -0.5))}
    run_dir = tmp_path / "outputs" / "runs" / ("2026-12-01_12-00-00_" + "a" * 60)
    print_results(RunRecord(run_dir, metrics=metrics, global_step=10, wall_time_s=1.5, tokens_per_s=1234.5))
    out = capsys.readouterr().out
    assert all(len(line) <= 80 for line in out.splitlines() if not line.startswith("run directory"))
    for text in ("perplexity", "229345.1235", "precision", "recall", "-0.5000", "12.3457"):
        assert text in out, out
    assert str(run_dir) in out.replace("\n", "")  # the path to type, whole (soft-wrapped, never cut)


def test_training_values_logged_only_when_written_are_the_same_values(make_cfg, tmp_path, small_corpus,
                                                                     monkeypatch):
    """LMModule logs train/ values only on the steps Lightning writes them (every log_every_n_steps,
    and the last step): the CSV rows and the run record hold what logging every step gives."""
    from lmexp.module import LMModule

    logged_losses = []
    log = LMModule.log

    def counting_log(self, name, value, *args, **kwargs):
        if name == "train/loss":
            logged_losses.append(self.global_step)
        return log(self, name, value, *args, **kwargs)

    monkeypatch.setattr(LMModule, "log", counting_log)
    common = [*TINY, "data=text_files", f"data.train_files={small_corpus}/*.txt", "tokenizer=byte",
              *SMALL_MODEL["native"], "trainer.max_steps=7", "trainer.val_check_interval=7"]
    train(make_cfg([*common, "trainer.log_every_n_steps=1"], run="every"))
    assert logged_losses == list(range(7))
    logged_losses.clear()
    train(make_cfg([*common, "trainer.log_every_n_steps=3"], run="sparse"))
    assert logged_losses == [2, 5, 6]  # written at steps 3 and 6; the last step for the record

    def rows(run: str) -> dict[int, dict]:
        with open(tmp_path / run / "csv" / "metrics.csv") as f:
            return {int(r["step"]): r for r in csv.DictReader(f) if r.get("train/loss")}

    every, sparse = rows("every"), rows("sparse")
    assert sorted(every) == list(range(7)) and sorted(sparse) == [2, 5]
    for step in sparse:
        assert float(sparse[step]["train/loss"]) == pytest.approx(float(every[step]["train/loss"]), rel=1e-6)
        assert float(sparse[step]["train/lr"]) == pytest.approx(float(every[step]["train/lr"]), rel=1e-9)
    # The record's train/loss is the last step's, as before.
    last = read_summary(tmp_path / "sparse")["metrics"]["train/loss"]
    assert last == pytest.approx(float(every[6]["train/loss"]), rel=1e-6)
    assert last == pytest.approx(read_summary(tmp_path / "every")["metrics"]["train/loss"], rel=1e-6)
