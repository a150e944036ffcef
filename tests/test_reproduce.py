"""experiments/ and `lmexp reproduce` / `lmexp experiments`."""

from __future__ import annotations

import json
from pathlib import Path
import math

import pytest

from conftest import SHARED_DATA, SMALL_MODEL, TINY
from conftest import read_summary
from lmexp.tools.claims import claim_arms
from lmexp.tools.reproduce import experiment_names, main, verdict
from lmexp.train import train

SHAKESPEARE = f"data.path={SHARED_DATA / 'tinyshakespeare'}"
CLAIMS = ["claim_weight_tying", "claim_post_ln_warmup", "claim_adamw_vs_adam_l2", "claim_rotary_positions"]
QUICK = ["trainer.val_check_interval=1", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
         "trainer.enable_progress_bar=false", "callbacks=minimal", "logger=csv", "trainer.num_sanity_val_steps=0"]
ON_CPU = ["trainer.accelerator=cpu", "trainer.devices=1", "trainer.precision=32-true", "trainer.strategy=auto",
          "trainer.accumulate_grad_batches=1"]


def test_every_experiment_has_a_complete_paper_claim_or_curve_block(make_cfg):
    assert {"nanogpt_shakespeare_char_cpu", "nanogpt_shakespeare_char", "grokking_modular_addition",
            "seed_article_mlm", "gpt2_124m_owt", "cramming_bert"} <= set(experiment_names())
    assert len(CLAIMS) >= 3
    for name in experiment_names():
        cfg = make_cfg([f"experiment={name}"])
        if cfg.get("claim") is not None:
            arms = claim_arms(name, cfg.claim)
            assert len(arms.overrides) >= 2 and len(cfg.claim.seeds) >= 3 and 0 < cfg.claim.alpha < 1, name
            for field in ("title", "authors", "year", "url", "statement", "metric", "direction", "budget", "data"):
                assert cfg.claim.get(field) is not None, (name, field)
            continue
        if cfg.get("paper") is None:
            assert cfg.curves, name
            continue
        paper = cfg.paper
        for key in ("title", "year", "metric", "tolerance", "direction", "budget", "hardware", "data"):
            assert paper.get(key) is not None, (name, key)
        assert "reported" in paper and "reference" in paper or paper.reported is not None, name


@pytest.mark.parametrize("name, arm", [
    ("claim_weight_tying", "model.tie_embeddings=false"), ("claim_post_ln_warmup", "model.norm_position=post"),
    ("claim_adamw_vs_adam_l2", "optimizer=adam"), ("claim_rotary_positions", "model.positions=rotary"),
])
def test_every_claim_runs_a_step_with_its_arm_that_is_not_the_default(make_cfg, tmp_path, name, arm):
    assert arm in make_cfg([f"experiment={name}"]).claim.arms
    train(make_cfg([f"experiment={name}", SHAKESPEARE, *QUICK, "trainer.max_steps=2", "trainer.limit_test_batches=1",
                    arm]))
    assert read_summary(tmp_path / "run")["status"] == "completed"


@pytest.mark.parametrize("name, overrides", [
    ("nanogpt_shakespeare_char_cpu", [SHAKESPEARE, "trainer.max_steps=2"]),
    ("nanogpt_shakespeare_char", [SHAKESPEARE, "trainer.max_steps=1", "data.batch_size=2", *ON_CPU]),
    ("grokking_modular_addition", ["trainer.max_steps=2"]),
    ("seed_article_mlm", [f"data.path={SHARED_DATA / 'wikitext2'}", "trainer.max_steps=1", "data.batch_size=2"]),
])
def test_experiment_runs_a_step(make_cfg, tmp_path, name, overrides):
    cfg = make_cfg([f"experiment={name}", *QUICK, *overrides])
    train(cfg)
    summary = read_summary(tmp_path / "run")
    assert summary["status"] == "completed"
    assert math.isfinite(summary["metrics"][cfg.paper.metric] if cfg.paper.metric in summary["metrics"]
                         else summary["metrics"]["val/loss"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gpt2_124m_owt", "cramming_bert"])
def test_big_experiments_run_a_step_on_substitute_data(make_cfg, tmp_path, small_corpus, name):
    substitute = ["data=text_files", f"data.train_files={small_corpus}/*.txt", "tokenizer=byte",
                  "data.block_size=32", "data.batch_size=2", "data.num_proc=null", "trainer.max_steps=1"]
    train(make_cfg([f"experiment={name}", *QUICK, *ON_CPU, *substitute]))
    assert read_summary(tmp_path / "run")["status"] == "completed"


def test_grokking_data_is_every_pair_once_and_predicts_only_the_answer(make_cfg):
    from hydra.utils import instantiate

    from lmexp.objectives.causal import CausalLM

    cfg = make_cfg(["experiment=grokking_modular_addition"])
    data = instantiate(cfg.data)
    data.prepare()
    train_rows, val_rows = data.blocks["train"], data.blocks["validation"]
    assert len(train_rows) == round(113 * 113 * 0.3) and len(train_rows) + len(val_rows) == 113 * 113
    pairs = {(a, b) for a, b, _, _ in train_rows.tolist()} | {(a, b) for a, b, _, _ in val_rows.tolist()}
    assert len(pairs) == 113 * 113
    assert all(c == (a + b) % 113 for a, b, _, c in train_rows.tolist())
    assert data.batch_size == len(train_rows)  # full batch
    batch = CausalLM(attention="causal", predict="last").collate(
        __import__("torch").from_numpy(train_rows[:4]))
    assert (batch["labels"][:, :-1] == -100).all() and batch["labels"][:, -1].tolist() == train_rows[:4, 3].tolist()


def test_verdict_directions_and_relative_tolerance(make_cfg):
    paper = make_cfg(["experiment=nanogpt_shakespeare_char_cpu"]).paper
    assert verdict(paper, 1.92)[2] and not verdict(paper, 1.94)[2]
    grok = make_cfg(["experiment=grokking_modular_addition"]).paper
    assert verdict(grok, 0.995)[2] and not verdict(grok, 0.9)[2]
    seed = make_cfg(["experiment=seed_article_mlm", "paper.reference=400.0"]).paper
    target, tolerance, passed = verdict(seed, 420.0)
    assert tolerance == pytest.approx(40.0) and passed
    unmeasured = make_cfg(["experiment=seed_article_mlm", "paper.reference=null"]).paper
    assert verdict(unmeasured, 420.0) == (None, None, None)


def test_experiments_lists_every_experiment_and_claim_whole_at_80_columns(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # and not a terminal: as in a pipe
    assert main(["experiments"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80 and "…" not in out
    for name in experiment_names():
        assert name in out
    assert "claims (lmexp reproduce <claim> ...)" in out and "model.tie_embeddings=false" in out


def test_reproduce_stops_at_once_when_data_or_hardware_is_missing(capsys):
    assert main(["reproduce", "nanogpt_shakespeare_char_cpu"]) == 2
    err = capsys.readouterr().err
    assert "data.path" in err and "Tiny Shakespeare" in err
    assert main(["reproduce", "nanogpt_shakespeare_char", SHAKESPEARE]) == 2
    assert "GPU" in capsys.readouterr().err
    assert main(["reproduce", "cramming_bert"]) == 2
    assert "not produced by one lmexp run" in capsys.readouterr().err
    assert main(["reproduce", "no_such_experiment"]) == 2
    assert "grokking_modular_addition" in capsys.readouterr().err


def test_reproduce_runs_and_judges_against_the_paper(tmp_path, monkeypatch):
    monkeypatch.setenv("LMEXP_OUTPUT_ROOT", str(tmp_path))
    monkeypatch.setenv("LMEXP_CACHE_DIR", str(tmp_path / "cache"))
    code = main(["reproduce", "nanogpt_shakespeare_char_cpu", SHAKESPEARE, "trainer.max_steps=3", *QUICK])
    assert code == 1  # three steps do not reach the paper's 1.88
    [run] = list((tmp_path / "runs").iterdir())
    result = json.loads((run / "reproduction.json").read_text())
    assert result["passed"] is False and result["reported"] == 1.88
    assert result["obtained"] == read_summary(run)["metrics"]["val/loss"]


def test_reproduce_a_run_directory_gives_identical_metrics(make_cfg, tmp_path, small_corpus, monkeypatch, capsys):
    from lmexp.config import register_resolvers

    # A real CLI run (it has .hydra/), then its re-run from the saved config.
    import subprocess
    import sys

    original = tmp_path / "runs" / "original"
    args = [*TINY, "data=text_files", f"data.train_files={small_corpus}/*.txt", "tokenizer=byte",
            *SMALL_MODEL["native"], "trainer.deterministic=true", f"paths.output_root={tmp_path}",
            f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={original}"]
    subprocess.run([sys.executable, "-m", "lmexp.train", *args], check=True, capture_output=True)
    recorded = read_summary(original)
    installed_torch = recorded["versions"]["torch"]
    recorded["versions"]["torch"] = "2.12.1"  # as if the original ran on another torch
    (original / "summary.json").write_text(json.dumps(recorded))
    register_resolvers()
    assert main(["reproduce", str(original)]) == 0
    out = capsys.readouterr().out
    assert "every metric is identical" in out
    assert f"versions differ from the original run: torch 2.12.1 → {installed_torch}" in out
    reruns = [p for p in (tmp_path / "runs").iterdir() if p.name != "original"]
    assert len(reruns) == 1 and read_summary(reruns[0])["metrics"] == read_summary(original)["metrics"]


def test_differing_metrics_name_differing_versions_among_the_causes():
    from omegaconf import OmegaConf

    from lmexp.runs.record import RunRecord
    from lmexp.tools.reproduce import likely_causes

    before = RunRecord(Path("a"), versions={"torch": "2.12.1", "datasets": "5.2.0"}, git={"commit": "x"})
    after = RunRecord(Path("b"), versions={"torch": "2.13.0", "datasets": "5.2.0"}, git={"commit": "x"})
    causes = likely_causes(before, after, OmegaConf.create({"trainer": {"deterministic": True}}))
    assert causes == ["package versions differ: torch 2.12.1 → 2.13.0"]


TINY_CLAIM = [SHAKESPEARE, *TINY, *SMALL_MODEL["native"], "claim.n_jobs=1", "claim.seeds=[1,2,3]",
              "trainer.max_steps=10", "trainer.val_check_interval=5"]


def claim_result(tmp_path) -> tuple[dict, object]:
    [sweep] = list((tmp_path / "multiruns").iterdir())
    return json.loads((sweep / "claim.json").read_text()), sweep


def test_a_claim_that_surely_holds_holds(tmp_path, monkeypatch, capsys):
    """lr ~0 against a working lr, 3 seeds, 10 steps: the working lr has the lower loss for sure."""
    from scipy import stats

    from lmexp.wandb_offline import find_offline_runs, read_offline_run

    monkeypatch.setenv("LMEXP_OUTPUT_ROOT", str(tmp_path))
    monkeypatch.setenv("LMEXP_CACHE_DIR", str(tmp_path / "cache"))
    code = main(["reproduce", "claim_rotary_positions", *TINY_CLAIM, "logger=wandb",
                 'claim.arms=["optimizer.lr=1e-7","optimizer.lr=1e-2"]', 'claim.baseline="optimizer.lr=1e-7"'])
    out = capsys.readouterr().out
    result, sweep = claim_result(tmp_path)
    assert code == 0 and result["verdict"] == "HOLDS" and "HOLDS: " in out
    assert result["runs"] == {"completed": 6, "total": 6} and result["wall_time_s"] > 0
    [arm] = [e for e in result["comparison"] if not e["baseline"]]
    assert arm["group"] == "optimizer.lr=0.01" and arm["test"] == "paired t" and arm["n"] == 3
    losses = {}
    for job in sweep.iterdir():
        if (job / "summary.json").exists():
            record = read_summary(job)
            losses[(next(o for o in record["overrides"] if o.startswith("optimizer.lr=")), record["seed"])] = \
                record["metrics"]["val/loss"]
    direct = stats.ttest_rel([losses[("optimizer.lr=0.01", s)] for s in (1, 2, 3)],
                             [losses[("optimizer.lr=1e-07", s)] for s in (1, 2, 3)])
    assert arm["p"] == pytest.approx(direct.pvalue) and arm["p"] < 0.05 and arm["diff"] < 0
    # The comparison, with its verdict, is a W&B run of its own in the sweep's group.
    [path] = find_offline_runs(sweep / "wandb")
    logged = read_offline_run(path)
    assert logged.job_type == "compare" and logged.group == sweep.name and logged.summary["verdict"] == "HOLDS"
    assert logged.config["claim"] == "claim_rotary_positions"
    # The report to look at, beside claim.json and in the W&B run; the power the claim had.
    assert (sweep / "claim.png").read_bytes()[:4] == b"\x89PNG" and f"claim report: {sweep / 'claim.json'}" in out
    assert json.loads((path / "files" / "claim.json").read_text())["verdict"] == "HOLDS"
    assert 0 < arm["detectable_diff"] < abs(arm["diff"]) and arm["boot_low"] <= arm["diff"] <= arm["boot_high"]
    assert "smallest difference this claim could detect (power 0.8" in out


def test_identical_arms_are_not_significant(tmp_path, monkeypatch, capsys):
    """Two arms of several keys each (a mapping of arm name -> overrides) that differ only in how
    often the loss is logged and in the group option that already is the default: the same runs,
    no difference."""
    monkeypatch.setenv("LMEXP_OUTPUT_ROOT", str(tmp_path))
    monkeypatch.setenv("LMEXP_CACHE_DIR", str(tmp_path / "cache"))
    code = main(["reproduce", "claim_rotary_positions", *TINY_CLAIM,
                 "~claim.arms", '+claim.arms={often: ["trainer.log_every_n_steps=1", "optimizer=adamw"], '
                 'rarely: ["trainer.log_every_n_steps=2", "callbacks=minimal"]}', "claim.baseline=often"])
    result, sweep = claim_result(tmp_path)
    [arm] = [e for e in result["comparison"] if not e["baseline"]]
    assert code == 1 and result["verdict"] == "NOT SIGNIFICANT" and "NOT SIGNIFICANT: " in capsys.readouterr().out
    assert arm["group"] == "arm=rarely" and arm["n"] == 3 and arm["p"] >= 0.05 and arm["diff"] == 0
    assert (sweep / "arms" / "arm" / "rarely.yaml").read_text() == (
        "# @package _global_\ndefaults:\n- override /callbacks: minimal\ntrainer:\n  log_every_n_steps: 2\n")
    jobs = [read_summary(job) for job in sweep.iterdir() if (job / "summary.json").exists()]
    assert sorted(job["overrides"][-2] for job in jobs) == ["+arm=often"] * 3 + ["+arm=rarely"] * 3


def test_your_folders_are_listed_resolved_and_a_name_twice_is_an_error(tmp_path, monkeypatch, capsys):
    """In-process and without training: the user's experiments beside lmexp's, composed from their
    folder; a name found twice names both files; a bad arm is refused before anything runs."""
    from lmexp.config_folders import user_config_dirs
    from lmexp.tools.reproduce import compose_experiment

    mine = tmp_path / "mine"
    (mine / "experiment").mkdir(parents=True)
    (mine / "experiment" / "my_claim.yaml").write_text(MY_CLAIM)
    monkeypatch.setenv("LMEXP_CONFIG_PATH", str(mine))
    monkeypatch.setenv("LMEXP_OUTPUT_ROOT", str(tmp_path / "out"))
    assert "my_claim" in experiment_names(user_config_dirs()) and "claim_weight_tying" in experiment_names()
    cfg = compose_experiment("my_claim", [], user_config_dirs())
    assert cfg.claim.baseline == "tiny" and cfg.model.d_model == 32
    assert main(["experiments"]) == 0 and f"my_claim*: yours, {mine / 'experiment' / 'my_claim.yaml'}" in \
        capsys.readouterr().out
    assert main(["reproduce", "my_claim", SHAKESPEARE, "claim.arms.working=[optimizer.no_such_key=1]"]) == 2
    assert "no viable alternative" in capsys.readouterr().err  # Hydra's line: an `=` inside a list needs quotes
    assert main(["reproduce", "my_claim", SHAKESPEARE, 'claim.arms.working=["optimizer.no_such_key=1"]']) == 2
    assert "my_claim: claim.arms.working: " in capsys.readouterr().err
    assert main(["reproduce", "my_claim", SHAKESPEARE, 'claim.arms.working=["seed=1,2"]']) == 2
    assert "claim.arms.working: seed=1,2: an arm sets a value" in capsys.readouterr().err
    (mine / "experiment" / "claim_weight_tying.yaml").write_text(MY_CLAIM)
    assert main(["experiments"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: experiment=claim_weight_tying is defined twice: ") and \
        str(mine / "experiment" / "claim_weight_tying.yaml") in err and err.count("\n") == 1
    monkeypatch.setenv("LMEXP_CONFIG_PATH", str(tmp_path / "nowhere"))
    assert main(["experiments"]) == 2 and "LMEXP_CONFIG_PATH=" in capsys.readouterr().err


def test_a_claim_with_arms_of_different_keys_is_refused(capsys):
    assert main(["reproduce", "claim_rotary_positions", SHAKESPEARE,
                 'claim.arms=["optimizer.lr=1e-3","model.positions=rotary"]']) == 2
    assert "claim.arms must be two or more overrides of one key" in capsys.readouterr().err


def test_tiny_curve_stays_in_its_band(tmp_path, monkeypatch, capsys):
    """CI's curve check: 300 steps of a tiny model against the curve lmexp recorded; then the same
    run against a reference moved out of the band at one step."""
    from lmexp.config_folders import find_option
    from lmexp.tools.curves import check_curve, read_curve, run_curve

    monkeypatch.setenv("LMEXP_OUTPUT_ROOT", str(tmp_path))
    monkeypatch.setenv("LMEXP_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["reproduce", "curve_tiny_char", "--curve", SHAKESPEARE]) == 0
    [run] = list((tmp_path / "runs").iterdir())
    [reference] = json.loads((run / "reproduction.json").read_text())["curves"]
    assert [(c["metric"], c["passed"], c["first_outside"]) for c in reference["metrics"]] == [
        ("val/loss", True, None), ("train/loss", True, None)]
    assert reference["metrics"][0]["points"] == 6 and reference["metrics"][1]["points"] == 30
    shown = capsys.readouterr().out
    assert "loss curves against the reference curves" in shown and shown.count("PASS") == 2

    recorded = read_curve(find_option("experiment", "curve_tiny_char", []).path.parent / "curves/curve_tiny_char.lmexp.csv")
    curve = run_curve(run, ["val/loss", "train/loss"])
    moved = {m: dict(points) for m, points in recorded.items()}
    moved["val/loss"][150] += 0.05
    moved["val/loss"][250] += 0.05
    moved["train/loss"][300] -= 0.021
    [val, train_loss] = check_curve(curve, moved, {"val/loss": 0.02, "train/loss": 0.02})
    assert not val["passed"] and val["first_outside"]["step"] == 150 and val["max_deviation"] > 0.03
    assert not train_loss["passed"] and train_loss["first_outside"]["step"] == 300
    moved["val/loss"][350] = 2.0  # a reference point the run never reached
    assert check_curve(curve, moved, {"val/loss": 1.0})[0]["first_outside"] == {"step": 350, "reference": 2.0,
                                                                                  "run": None}


# A researcher's own folder, outside the checkout: a paper experiment with a curve, and a claim
# whose arms set several keys each.
MY_PAPER = """# @package _global_
defaults:
  - claims/shakespeare_char
  - override /logger: csv
model: {d_model: 32, n_layers: 1, n_heads: 2}
trainer: {max_steps: 6, val_check_interval: 3, limit_val_batches: 2, limit_test_batches: 2, log_every_n_steps: 1}
paper:
  title: My paper
  year: 2026
  metric: val/loss
  reported: 4.0
  tolerance: 1.5
  direction: min
  budget: seconds
  hardware: CPU
  data: Tiny Shakespeare
curves:
  - name: mine
    file: curves/my_paper.csv
    metrics: [val/loss]
    tolerance: {val/loss: 2.0}
"""
MY_CLAIM = """# @package _global_
defaults:
  - claims/shakespeare_char
  - override /logger: csv
model: {d_model: 32, n_layers: 1, n_heads: 2}
trainer: {max_steps: 6, val_check_interval: 6, limit_val_batches: 2, limit_test_batches: 2}
claim:
  title: My claim
  authors: Me
  year: 2026
  statement: a working lr with warmup beats a tiny lr without
  arms:
    tiny: [optimizer=adam, optimizer.lr=1e-7, scheduler.warmup_steps=0]
    working: [optimizer.lr=1e-2, scheduler.warmup_steps=2]
  baseline: tiny
  metric: val/loss
  direction: lower
  seeds: [1, 2, 3]
  alpha: 0.05
  budget: seconds
  data: Tiny Shakespeare
"""


@pytest.mark.slow  # five console-script processes and 7 tiny runs: about a minute on a quiet 2-core machine
def test_your_folder_experiments_curves_and_claims_through_the_console_scripts(tmp_path):
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    mine = tmp_path / "my_repo" / "configs"
    (mine / "experiment" / "curves").mkdir(parents=True)
    (mine / "experiment" / "my_paper.yaml").write_text(MY_PAPER)
    (mine / "experiment" / "curves" / "my_paper.csv").write_text("step,val/loss\n3,4.2\n6,3.9\n")
    (mine / "experiment" / "my_claim.yaml").write_text(MY_CLAIM)
    scripts = Path(sys.executable).parent
    env = {**os.environ, "LMEXP_OUTPUT_ROOT": str(tmp_path / "out"), "LMEXP_CACHE_DIR": str(tmp_path / "cache"),
           "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "COLUMNS": "200"}

    def lmexp(*args, **extra):
        return subprocess.run([str(scripts / "lmexp"), *args], capture_output=True, text=True, cwd=tmp_path,
                              env={**env, **extra})

    listed = lmexp("experiments", "--config-dir", str(mine))
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "my_paper*" in listed.stdout and "my_claim*" in listed.stdout and "claim_weight_tying" in listed.stdout
    assert f"my_claim*: yours, {mine / 'experiment' / 'my_claim.yaml'}" in listed.stdout

    paper = lmexp("reproduce", "my_paper", "--curve", "--config-dir", str(mine), SHAKESPEARE)
    assert paper.returncode == 0, paper.stdout[-2000:] + paper.stderr[-2000:]
    [run] = list((tmp_path / "out" / "runs").iterdir())
    result = json.loads((run / "reproduction.json").read_text())
    assert result["passed"] is True and result["reported"] == 4.0
    assert [(c["metric"], c["points"], c["passed"]) for c in result["curves"][0]["metrics"]] == [("val/loss", 2, True)]

    # The claim from LMEXP_CONFIG_PATH: a pilot of two seeds and its plan, then the whole claim in the
    # pilot's sweep (its runs count); the arms set an optimizer group, lr and warmup each.
    pilot = lmexp("reproduce", "my_claim", "--plan", "--pilot", "2", SHAKESPEARE, LMEXP_CONFIG_PATH=str(mine))
    assert pilot.returncode == 0, pilot.stdout[-3000:] + pilot.stderr[-3000:]
    [sweep] = list((tmp_path / "out" / "multiruns").iterdir())
    plan = json.loads((sweep / "plan.json").read_text())
    [arm] = plan["arms"]
    assert arm["arm"] == "working" and arm["pilot_n"] == 2 and arm["seeds_needed"] >= 2 and "plan: " in pilot.stdout
    assert not (sweep / "claim.json").exists()
    claim = lmexp("reproduce", "my_claim", SHAKESPEARE, "--sweep-dir", str(sweep), LMEXP_CONFIG_PATH=str(mine))
    assert claim.returncode == 0, claim.stdout[-3000:] + claim.stderr[-3000:]
    result = json.loads((sweep / "claim.json").read_text())
    assert result["verdict"] == "HOLDS" and result["runs"] == {"completed": 6, "total": 6}
    assert result["arms"]["tiny"] == ["optimizer=adam", "optimizer.lr=1e-7", "scheduler.warmup_steps=0"]
    [arm] = [e for e in result["comparison"] if not e["baseline"]]
    assert arm["group"] == "arm=working" and arm["n"] == 3 and arm["test"] == "paired t"
    configs = {read_summary(job)["overrides"][-2]: (job / ".hydra" / "config.yaml").read_text()
               for job in sweep.iterdir() if (job / "summary.json").exists()}
    assert "torch.optim.Adam\n" in configs["+arm=tiny"] and "torch.optim.AdamW" in configs["+arm=working"]
    assert "arm tiny: optimizer=adam optimizer.lr=1e-7 scheduler.warmup_steps=0" in claim.stdout

    # A name in two places is an error naming both files; lmexp-train says the same.
    (tmp_path / "other" / "experiment").mkdir(parents=True)
    shutil.copy(mine / "experiment" / "my_claim.yaml", tmp_path / "other" / "experiment" / "curve_tiny_char.yaml")
    twice = lmexp("experiments", "--config-dir", str(mine), "--config-dir", str(tmp_path / "other"))
    assert twice.returncode == 2 and "experiment=curve_tiny_char is defined twice: " in twice.stderr
    assert str(tmp_path / "other" / "experiment" / "curve_tiny_char.yaml") in twice.stderr
    train = subprocess.run([str(scripts / "lmexp-train"), f"hydra.searchpath=[file://{tmp_path / 'other'}]",
                            "experiment=curve_tiny_char", SHAKESPEARE], capture_output=True, text=True,
                           cwd=tmp_path, env=env)
    assert train.returncode == 1 and train.stderr.strip().splitlines()[-1].startswith(
        "error: experiment=curve_tiny_char is defined twice: "), train.stderr[-2000:]

