"""lmexp-eval: evaluate a checkpoint. The checkpoint carries its training config and tokenizer,
so a .ckpt file alone is enough (`lmexp-eval ckpt_path=outputs/runs/.../checkpoints/last.ckpt`)."""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from lmexp.config import hydra_entry_point, validate
from lmexp.errors import ConfigError
from lmexp.runs.record import RunRecord, git_info, package_versions, print_results
from lmexp.schema import EVAL


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Evaluate `cfg.ckpt_path` on the requested splits; write summary.json; return the metrics."""
    validate(cfg, EVAL)

    import pytorch_lightning as pl

    from lmexp import build, module
    from lmexp.checkpointing import load_lmexp_checkpoint, restore_tokenizer
    from lmexp.runs.load import resolve_checkpoint

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
            own_files = {"validation": "val_files", "test": "test_files"}
            if "train_files" in train_cfg.data and all(train_cfg.data.get(own_files.get(s, "train_files"))
                                                       for s in cfg.splits if s != "train"):
                # Scoring splits that have files of their own needs no training text (wikitext2: no wiki.train.tokens).
                train_cfg.data.train_files = None
    # A classifier keeps the label ids it was trained with, whatever data it is evaluated on.
    parts = build.build_parts(train_cfg, restore_tokenizer(state["tokenizer_files"], run_dir / "tokenizer"),
                              labels=state.get("labels"))
    lm_module = module.LMModule(parts.model, parts.objective, optimizer=None)
    lm_module.load_state_dict(checkpoint["state_dict"])

    for split in cfg.splits:
        if not parts.datamodule.has_split(split):
            present = [s for s in ("train", "validation", "test") if parts.datamodule.has_split(s)]
            raise ConfigError(f"splits: the data has no '{split}' split (has {present})")
    limit = cfg.get("limit_batches")  # None: Lightning's whole split, without its note that it is 100%
    trainer = pl.Trainer(
        accelerator=train_cfg.trainer.get("accelerator", "auto"), devices=1, logger=False,
        enable_checkpointing=False, limit_val_batches=limit, limit_test_batches=limit,
        precision=train_cfg.trainer.get("precision", "32-true"), default_root_dir=str(run_dir),
    )
    record = RunRecord(run_dir, task="eval", checkpoint=ckpt_path, git=git_info(), versions=package_versions(),
                       metrics=module.score_splits(trainer, lm_module, parts.datamodule, list(cfg.splits)),
                       data_fingerprint=parts.datamodule.fingerprint, global_step=checkpoint.get("global_step"))
    record.status = "completed"
    record.wall_time_s = round(time.perf_counter() - start, 3)
    record.write()
    print_results(record)
    return record.metrics


main = hydra_entry_point("eval", evaluate)

if __name__ == "__main__":
    main()
