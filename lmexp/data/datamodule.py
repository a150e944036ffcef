"""The LightningDataModule for language modelling: source → tokenizer → token store → loaders.

Preprocessing (tokenizer training, tokenization) is cached on disk under a key of everything that
changes its result, so a second identical run only memory-maps the store's shards
(lmexp.data.token_store); packed blocks and random windows are cut from them as they are read.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader

from lmexp.data.cache import cache_key, load_or_build
from lmexp.data.packing import ResumableRandomSampler, TokenBlocks, TokenWindows, smallest_dtype
from lmexp.data.sources import Corpus
from lmexp.data.token_store import (SHARD_CHARS, STORE_FORMAT, TokenStream, joined, open_store, write_index,
                                    write_json, write_shards)
from lmexp.data.tokenizers import TextBudget
from lmexp.errors import ConfigError, ExpectedFailure, cannot_write

log = logging.getLogger(__name__)

# Bump when the preprocessing code changes what it writes, so old caches are not reused.
CACHE_FORMAT = 2
# Beside a store's tokenizer: how much text it was trained on.
TOKENIZER_SAMPLE = "tokenizer_sample.json"


def tokenizer_texts(corpus: Corpus, train_bytes: int | None) -> Iterator[str]:
    """The train documents a tokenizer learns from: all of them, in order, when there are at most
    `train_bytes`; else every (1/rate)-th document from a seeded start, rate = train_bytes / (the
    corpus's train text), so the sample spans the whole corpus (build_tokenizer stops at train_bytes)."""
    rate = min(1.0, train_bytes / corpus.train_chars) if train_bytes and corpus.train_chars else 1.0
    credit = 1.0 if rate >= 1.0 else random.Random(0).random()
    for split, texts, _ in joined(corpus.blocks()):
        if split != "train":
            continue
        for text in texts:
            credit += rate
            if credit >= 1.0:
                credit -= 1.0
                yield text


class TokenizedDataModule(pl.LightningDataModule):
    """What LM and classification data share: a source and a tokenizer config turned into arrays by
    `prepare()` (cached), and loaders whose training order is seeded and resumes mid-epoch exactly.

    Call `prepare()` before building the model: the model's vocabulary comes from the tokenizer
    made there. `collate` is the objective's collator. `labels` and `label_counts` stay None for
    unlabelled data.
    """

    labels: list | None = None
    label_counts: list[int] | None = None
    # Whether a build killed half-way goes on from what it finished (see load_or_build).
    resumable = False

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
        self.preprocessing_info: dict = {}  # for the run record: what preprocessing made

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
        self.cache_hit = load_or_build(self.cache_dir, key, lambda directory: self.build_into(corpus, tokenizer_cfg, directory),
                                       self.load_cache, resume=self.resumable)
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
    """Token-stream data for causal and masked LM objectives: packed blocks (or random windows)
    read from a token store on disk; memory does not grow with the corpus."""

    resumable = True

    def __init__(self, source: Any, tokenizer: DictConfig | dict, block_size: int, batch_size: int,
                 sampling: str = "packed", shard_chars: int | None = None, **common: Any) -> None:
        super().__init__(source, tokenizer, batch_size, **common)
        self.block_size = block_size
        if sampling not in ("packed", "random_windows"):
            raise ConfigError(f"data.sampling must be 'packed' or 'random_windows', got '{sampling}'")
        self.sampling = sampling
        self.shard_chars = shard_chars or SHARD_CHARS
        self.streams: dict[str, TokenStream] = {}
        self.blocks: dict[str, TokenBlocks] = {}

    def cache_parts(self) -> dict:
        # No block_size: one store serves every block size; the shard size fixes its files.
        return {"shape": "token_store", "store_format": STORE_FORMAT, "shard_chars": self.shard_chars}

    def describe(self) -> str:
        return ", ".join(f"{name} {len(b)} blocks" for name, b in self.blocks.items())

    def build_into(self, corpus: Corpus, tokenizer_cfg: dict, directory: Path) -> None:
        tokenizer, text_bytes = self.make_tokenizer(corpus, tokenizer_cfg, directory)
        dtype = smallest_dtype(len(tokenizer))
        shards = write_shards(corpus.blocks(), tokenizer, directory, dtype, self.shard_chars, self.num_proc)
        write_index(directory, shards, dtype, {"fingerprint": self.fingerprint, "tokenizer_text_bytes": text_bytes})

    def make_tokenizer(self, corpus: Corpus, tokenizer_cfg: dict, directory: Path):
        """The tokenizer (trained on a sample of the train text, or the one a killed build of this
        store saved already) and how many bytes of text it was trained on."""
        from transformers import AutoTokenizer

        saved = directory / "tokenizer"
        if saved.is_dir():
            return AutoTokenizer.from_pretrained(str(saved)), json.loads((directory / TOKENIZER_SAMPLE).read_text())["bytes"]
        sample = TextBudget(tokenizer_texts(corpus, tokenizer_cfg.get("train_bytes")), tokenizer_cfg.get("train_bytes"))
        try:
            tokenizer = instantiate(tokenizer_cfg, texts=iter(sample))
        except InstantiationException as err:  # the text it reads streams: a bad file fails in there
            if isinstance(err.__cause__, ExpectedFailure):
                raise err.__cause__ from None
            raise
        scratch = directory / "tokenizer.tmp"
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            tokenizer.save_pretrained(str(scratch))
        except OSError as err:
            raise cannot_write(scratch, "the tokenizer", err) or err
        write_json(directory / TOKENIZER_SAMPLE, {"bytes": sample.bytes_seen}, "the tokenizer's sample size")
        try:
            os.replace(scratch, saved)
        except OSError as err:
            raise cannot_write(saved, "the tokenizer", err) or err
        return tokenizer, sample.bytes_seen

    def load_cache(self, directory: Path) -> None:
        from transformers import AutoTokenizer

        index, self.streams = open_store(directory)
        self.tokenizer = AutoTokenizer.from_pretrained(str(directory / "tokenizer"))
        self.preprocessing_info = {"store": str(directory), "tokenizer_text_bytes": index["tokenizer_text_bytes"],
                                   "tokens": {name: len(stream) for name, stream in self.streams.items()}}
        self.after_streams()

    def after_streams(self) -> None:
        """Blocks of every split; a split shorter than one block is an error."""
        for name, stream in self.streams.items():
            if len(stream) < self.block_size:
                raise ConfigError(
                    f"data: the {name} split has {len(stream)} tokens, fewer than one block of "
                    f"data.block_size={self.block_size}; use more data or a smaller block_size"
                )
        self.blocks = {name: self.split_blocks(name) for name in self.streams}

    def has_split(self, name: str) -> bool:
        return name in self.streams

    def split_blocks(self, name: str) -> TokenBlocks:
        return TokenBlocks(self.streams[name], self.block_size)

    def train_dataloader(self) -> DataLoader:
        blocks = self.split_blocks("train")
        if self.sampling == "random_windows":
            # As many windows per epoch as packed blocks, each at a random offset of the blocks' tokens.
            windows = TokenWindows(self.streams["train"], self.block_size, len(blocks) * self.block_size)
            return self._train_loader(windows, len(blocks), population=len(windows))
        return self._train_loader(blocks, len(blocks))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.split_blocks("validation"))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.split_blocks("test"))
