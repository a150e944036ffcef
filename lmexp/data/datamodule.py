"""The LightningDataModule for language modelling: source → tokenizer → packed blocks → loaders.

Preprocessing (tokenizer training, tokenization, packing) is cached on disk under a key of
everything that changes its result, so a second identical run only memory-maps arrays.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytorch_lightning as pl
import torch
from filelock import FileLock
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from lmexp.data.packing import TokenBlocks, pack_into_blocks, smallest_dtype
from lmexp.data.sources import Corpus
from lmexp.errors import ConfigError

log = logging.getLogger(__name__)

# Bump when the preprocessing code changes what it writes, so old caches are not reused.
CACHE_FORMAT = 1


def cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def tokenize_and_pack(corpus: Corpus, tokenizer, block_size: int, num_proc: int | None) -> dict[str, np.ndarray]:
    """Tokenize every split with `Dataset.map`, end each document with EOS, pack into blocks."""
    eos = tokenizer.eos_token_id
    dtype = smallest_dtype(len(tokenizer))

    def encode(batch: dict[str, list[str]]) -> dict[str, list[list[int]]]:
        ids = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
        return {"input_ids": [seq + [eos] for seq in ids]}

    blocks = {}
    for name, split in corpus.splits.items():
        encoded = split.map(
            encode, batched=True, batch_size=256, remove_columns=split.column_names,
            keep_in_memory=True, num_proc=num_proc, desc=f"tokenizing {name}",
        )
        stream = encoded.data.column("input_ids").combine_chunks().flatten().to_numpy().astype(dtype)
        blocks[name] = pack_into_blocks(stream, block_size)
        if len(blocks[name]) == 0:
            raise ConfigError(
                f"data: the {name} split has {len(stream)} tokens, fewer than one block of "
                f"data.block_size={block_size}; use more data or a smaller block_size"
            )
    return blocks


class LMDataModule(pl.LightningDataModule):
    """Packed-block data for causal and masked LM objectives.

    Call `prepare()` before building the model: the model's vocabulary comes from the
    tokenizer made here. The objective's collator is set afterwards with `collate`.
    """

    def __init__(
        self,
        source: Any,
        tokenizer: DictConfig | dict,
        block_size: int,
        batch_size: int,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        num_proc: int | None = None,
        cache_dir: str | None = None,
        collate: Callable | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.tokenizer_cfg = tokenizer
        self.block_size = block_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.num_proc = num_proc
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.collate = collate
        self.tokenizer = None
        self.blocks: dict[str, np.ndarray] = {}
        self.fingerprint: str | None = None
        self.cache_hit = False
        self.preprocess_s = 0.0

    def prepare(self) -> None:
        if self.tokenizer is not None:
            return
        start = time.perf_counter()
        corpus = self.source.load()
        self.fingerprint = corpus.fingerprint
        tokenizer_cfg = (
            OmegaConf.to_container(self.tokenizer_cfg, resolve=True)
            if isinstance(self.tokenizer_cfg, DictConfig) else dict(self.tokenizer_cfg)
        )
        key = cache_key({
            "format": CACHE_FORMAT, "data": corpus.fingerprint, "tokenizer": tokenizer_cfg,
            "block_size": self.block_size, "shape": "packed_blocks",
        })
        if self.cache_dir is None:
            self._build(corpus, tokenizer_cfg)
        else:
            target = self.cache_dir / "preprocessed" / key
            target.parent.mkdir(parents=True, exist_ok=True)
            # The lock keeps two processes (joblib jobs, DDP ranks) from building one entry twice.
            with FileLock(str(target) + ".lock"):
                if (target / "meta.json").exists():
                    self._load(target)
                    self.cache_hit = True
                else:
                    self._build(corpus, tokenizer_cfg)
                    self._save(target)
        self.preprocess_s = time.perf_counter() - start
        log.info(
            "preprocessing %s (%.2fs): %s",
            "loaded from cache" if self.cache_hit else "built",
            self.preprocess_s,
            ", ".join(f"{name} {len(b)} blocks" for name, b in self.blocks.items()),
        )

    def _build(self, corpus: Corpus, tokenizer_cfg: dict) -> None:
        train_texts = (text for text in corpus.splits["train"]["text"])
        self.tokenizer = instantiate(tokenizer_cfg, texts=train_texts)
        self.blocks = tokenize_and_pack(corpus, self.tokenizer, self.block_size, self.num_proc)

    def _save(self, target: Path) -> None:
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.tokenizer.save_pretrained(tmp / "tokenizer")
        for name, array in self.blocks.items():
            np.save(tmp / f"{name}.npy", array)
        (tmp / "meta.json").write_text(json.dumps({"fingerprint": self.fingerprint, "splits": list(self.blocks)}))
        os.replace(tmp, target)  # atomic: a half-written entry is never seen as a cache hit

    def _load(self, target: Path) -> None:
        from transformers import AutoTokenizer

        meta = json.loads((target / "meta.json").read_text())
        self.tokenizer = AutoTokenizer.from_pretrained(str(target / "tokenizer"))
        self.blocks = {name: np.load(target / f"{name}.npy", mmap_mode="r") for name in meta["splits"]}

    def has_split(self, name: str) -> bool:
        return name in self.blocks

    def num_tokens(self, name: str) -> int:
        return int(self.blocks[name].size) if name in self.blocks else 0

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        if not self.blocks:
            raise RuntimeError("LMDataModule.prepare() must run before the loaders are asked for")
        return DataLoader(
            TokenBlocks(self.blocks[name]),
            batch_size=self.batch_size if shuffle else self.eval_batch_size,
            shuffle=shuffle,
            drop_last=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=self.collate,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def batch_of(self, name: str, size: int) -> torch.Tensor:
        """The first `size` blocks of a split (for benchmarks and sanity checks)."""
        return torch.from_numpy(np.asarray(self.blocks[name][:size]).astype(np.int64))
