"""lmexp-eval: evaluate a checkpoint. The checkpoint carries its training config and tokenizer,
so a .ckpt file alone is enough (`lmexp-eval ckpt_path=outputs/runs/.../checkpoints/last.ckpt`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from lmexp.config import config_dir, register_resolvers, resolve_checkpoint, validate
from lmexp.console import quiet_third_party
from lmexp.errors import ConfigError, ExpectedFailure
from lmexp.schema import EVAL


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Evaluate `cfg.ckpt_path` on the requested splits; write summary.json; return the metrics."""
    validate(cfg, EVAL)

    import pytorch_lightning as pl

    from lmexp import build, records
    from lmexp.module import LMModule
    from lmexp.runs import load_lmexp_checkpoint
    from lmexp.train import print_results

    start = time.perf_counter()
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = resolve_checkpoint(cfg.ckpt_path, cfg.paths.output_root)
    checkpoint = load_lmexp_checkpoint(ckpt_path, trust=cfg.trust_checkpoint)
    state = checkpoint["lmexp"]

    train_cfg = OmegaConf.create(state["config"])
    with open_dict(train_cfg):
        train_cfg.paths = cfg.paths
        if cfg.get("data") is not None:
            train_cfg.data = cfg.data
    tokenizer_dir = run_dir / "tokenizer"
    build.restore_tokenizer(state["tokenizer_files"], tokenizer_dir)
    tokenizer_cfg = {"_target_": "lmexp.data.tokenizers.build_tokenizer", "kind": "pretrained",
                     "name_or_path": str(tokenizer_dir)}
    # A classifier keeps the label ids it was trained with, whatever data it is evaluated on.
    datamodule = build.build_datamodule(train_cfg, tokenizer_cfg, labels=state.get("labels"))
    datamodule.prepare()
    objective = build.build_objective(train_cfg, datamodule)
    datamodule.collate = objective.collate
    module = LMModule(build.build_model(train_cfg, datamodule.tokenizer, objective), objective, optimizer=None)
    module.load_state_dict(checkpoint["state_dict"])

    limit = cfg.get("limit_batches") or 1.0
    trainer = pl.Trainer(
        accelerator=train_cfg.trainer.get("accelerator", "auto"), devices=1, logger=False,
        enable_checkpointing=False, limit_val_batches=limit, limit_test_batches=limit,
        precision=train_cfg.trainer.get("precision", "32-true"), default_root_dir=str(run_dir),
    )
    metrics: dict[str, float] = {}
    for split in cfg.splits:
        if not datamodule.has_split(split):
            present = [s for s in ("train", "validation", "test") if datamodule.has_split(s)]
            raise ConfigError(f"splits: the data has no '{split}' split (has {present})")
        run = trainer.validate if split == "validation" else trainer.test
        for result in run(module, datamodule=datamodule, verbose=False):
            metrics.update({k: float(v) for k, v in result.items()})

    summary = {
        "status": "completed", "error": None, "task": "eval", "checkpoint": ckpt_path,
        "metrics": metrics, "data_fingerprint": datamodule.fingerprint,
        "versions": records.package_versions(), "git": records.git_info(),
        "wall_time_s": round(time.perf_counter() - start, 3), "global_step": checkpoint.get("global_step"),
        "tokens_per_s": None,
    }
    records.write_summary(run_dir, summary)
    print_results(summary, run_dir)
    return metrics


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="eval")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    except ExpectedFailure as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


def main() -> None:
    register_resolvers()
    quiet_third_party()
    _hydra_main()


if __name__ == "__main__":
    main()
