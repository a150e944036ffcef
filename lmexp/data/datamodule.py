"""The LightningDataModule for language modelling: source → tokenizer → packed blocks → loaders.

Preprocessing (tokenizer training, tokenization, packing) is cached on disk under a key of
everything that changes its result, so a second identical run only memory-maps arrays.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader

from lmexp.data.cache import cache_key, load_or_build
from lmexp.data.packing import ResumableRandomSampler, TokenBlocks, TokenWindows, pack_into_blocks, smallest_dtype
from lmexp.data.sources import Corpus
from lmexp.errors import ConfigError

log = logging.getLogger(__name__)

# Bump when the preprocessing code changes what it writes, so old caches are not reused.
CACHE_FORMAT = 1


def tokenize_and_pack(corpus: Corpus, tokenizer, block_size: int, num_proc: int | None,
                      key: str) -> dict[str, np.ndarray]:
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
            # Our cache key already covers the result; it also spares datasets pickling the tokenizer.
            new_fingerprint=f"{key}-{name}",
        )
        stream = encoded.data.column("input_ids").combine_chunks().flatten().to_numpy().astype(dtype)
        blocks[name] = pack_into_blocks(stream, block_size)
        if len(blocks[name]) == 0:
            raise ConfigError(
                f"data: the {name} split has {len(stream)} tokens, fewer than one block of "
                f"data.block_size={block_size}; use more data or a smaller block_size"
            )
    return blocks


class TokenizedDataModule(pl.LightningDataModule):
    """What LM and classification data share: a source and a tokenizer config turned into arrays by
    `prepare()` (cached), and loaders whose training order is seeded and resumes mid-epoch exactly.

    Call `prepare()` before building the model: the model's vocabulary comes from the tokenizer
    made there. `collate` is the objective's collator. `labels` and `label_counts` stay None for
    unlabelled data.
    """

    labels: list | None = None
    label_counts: list[int] | None = None

    def __init__(
        self,
        source: Any,
        tokenizer: DictConfig | dict,
        batch_size: int,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        num_proc: int | None = None,
        cache_dir: str | None = None,
        collate: Callable | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.source = source
        self.tokenizer_cfg = tokenizer
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.num_proc = num_proc
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.collate = collate
        self.seed = seed
        self.samples_to_skip = 0  # set when resuming mid-epoch (see load_state_dict)
        self.tokenizer = None
        self.fingerprint: str | None = None
        self.cache_hit = False
        self.preprocess_s = 0.0

    def prepare(self) -> None:
        """Tokenize the data, or load it from the preprocessing cache (keyed by the data's
        fingerprint, the tokenizer config and the subclass's `cache_parts`), making the tokenizer."""
        if self.tokenizer is not None:
            return
        start = time.perf_counter()
        corpus = self.load_corpus()
        self.fingerprint = corpus.fingerprint
        tokenizer_cfg = self.resolved_tokenizer_cfg()
        key = cache_key({"format": CACHE_FORMAT, "data": corpus.fingerprint, "tokenizer": tokenizer_cfg,
                         **self.cache_parts()})
        self.cache_hit = load_or_build(
            self.cache_dir, key, lambda: self.build_arrays(corpus, tokenizer_cfg, key), self.save_cache, self.load_cache
        )
        self.after_prepare()
        self.preprocess_s = time.perf_counter() - start
        log.info("preprocessing %s (%.2fs): %s", "loaded from cache" if self.cache_hit else "built",
                 self.preprocess_s, self.describe())

    def load_corpus(self) -> Corpus:
        return self.source.load()

    def after_prepare(self) -> None:
        """Whatever needs the tokenized data (classification: the label counts)."""

    def resolved_tokenizer_cfg(self) -> dict:
        if isinstance(self.tokenizer_cfg, DictConfig):
            return OmegaConf.to_container(self.tokenizer_cfg, resolve=True)
        return dict(self.tokenizer_cfg)

    def _loader(self, dataset: torch.utils.data.Dataset, sampler: torch.utils.data.Sampler | None = None
                ) -> DataLoader:
        """A training loader with `sampler`, or an evaluation loader (in order) without one."""
        training = sampler is not None
        if not training and self.trainer is not None and self.trainer.world_size > 1:
            # Lightning's default DistributedSampler pads a split to a multiple of the world size by
            # repeating examples, which the metrics would count twice; this one gives each rank a
            # disjoint share (off by at most one example).
            sampler = UnrepeatedDistributedSampler(dataset, num_replicas=self.trainer.world_size,
                                                   rank=self.trainer.global_rank, shuffle=False)
        return DataLoader(
            dataset,
            batch_size=self.batch_size if training else self.eval_batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=self.collate,
            # Its own generator: making an iterator then draws nothing from the global RNG, whose
            # stream (dropout) must not depend on when loaders were created (resume exactness).
            generator=torch.Generator(),
        )

    def _train_loader(self, dataset: torch.utils.data.Dataset, num_samples: int,
                      population: int | None = None) -> DataLoader:
        sampler = ResumableRandomSampler(num_samples, self.seed, population=population)
        sampler.skip, self.samples_to_skip = self.samples_to_skip, 0
        return self._loader(dataset, sampler)

    def state_dict(self) -> dict[str, int]:
        """Saved in checkpoints: how far into the current epoch training got."""
        if self.trainer is None:
            return {}
        done = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"train_samples_done_in_epoch": done * self.batch_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.samples_to_skip = state.get("train_samples_done_in_epoch", 0)


class LMDataModule(TokenizedDataModule):
    """Packed-block data for causal and masked LM objectives."""

    def __init__(self, source: Any, tokenizer: DictConfig | dict, block_size: int, batch_size: int,
                 sampling: str = "packed", **common: Any) -> None:
        super().__init__(source, tokenizer, batch_size, **common)
        self.block_size = block_size
        if sampling not in ("packed", "random_windows"):
            raise ConfigError(f"data.sampling must be 'packed' or 'random_windows', got '{sampling}'")
        self.sampling = sampling
        self.blocks: dict[str, np.ndarray] = {}

    def cache_parts(self) -> dict:
        return {"block_size": self.block_size, "shape": "packed_blocks"}

    def describe(self) -> str:
        return ", ".join(f"{name} {len(b)} blocks" for name, b in self.blocks.items())

    def build_arrays(self, corpus: Corpus, tokenizer_cfg: dict, key: str) -> None:
        train_texts = (text for text in corpus.splits["train"]["text"]) if "train" in corpus.splits else iter(())
        self.tokenizer = instantiate(tokenizer_cfg, texts=train_texts)
        self.blocks = tokenize_and_pack(corpus, self.tokenizer, self.block_size, self.num_proc, key)

    def save_cache(self, directory: Path) -> None:
        self.tokenizer.save_pretrained(directory / "tokenizer")
        for name, array in self.blocks.items():
            np.save(directory / f"{name}.npy", array)
        (directory / "meta.json").write_text(json.dumps({"fingerprint": self.fingerprint, "splits": list(self.blocks)}))

    def load_cache(self, target: Path) -> None:
        from transformers import AutoTokenizer

        meta = json.loads((target / "meta.json").read_text())
        self.tokenizer = AutoTokenizer.from_pretrained(str(target / "tokenizer"))
        self.blocks = {name: np.load(target / f"{name}.npy", mmap_mode="r") for name in meta["splits"]}

    def has_split(self, name: str) -> bool:
        return name in self.blocks

    def num_tokens(self, name: str) -> int:
        return int(self.blocks[name].size) if name in self.blocks else 0

    def train_dataloader(self) -> DataLoader:
        rows = self.blocks["train"]
        if self.sampling == "random_windows":
            # As many windows per epoch as packed rows, each at a random offset of the stream.
            windows = TokenWindows(np.asarray(rows).reshape(-1), rows.shape[1])
            return self._train_loader(windows, len(rows), population=len(windows))
        return self._train_loader(TokenBlocks(rows), len(rows))

    def val_dataloader(self) -> DataLoader:
        return self._loader(TokenBlocks(self.blocks["validation"]))

    def test_dataloader(self) -> DataLoader:
        return self._loader(TokenBlocks(self.blocks["test"]))
