"""The LightningDataModule for sequence classification: labelled source → tokenizer → token ids
and a label id per example → batches padded to their longest example (the objective's collator).

Label ids follow the sorted labels of the train split, or a given list (a checkpoint's, so an
evaluation uses the model's mapping). Preprocessing is cached like the LM data's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from datasets import Dataset, DatasetDict, load_from_disk
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from lmexp.console import no_datasets_bars
from lmexp.data.datamodule import TokenizedDataModule
from lmexp.data.sources import Corpus
from lmexp.errors import ConfigError, cannot_write


def check_labels(splits: dict[str, Dataset], labels: list, origins: dict[str, str], whose: str) -> None:
    """Every label of every split must be one of `labels`: an unknown one has no class id."""
    known = set(labels)
    for name, split in splits.items():
        unknown = sorted(set(split["label"][:]) - known, key=str)
        if unknown:
            shown = ", ".join(map(str, labels[:10])) + (", ..." if len(labels) > 10 else "")
            raise ConfigError(
                f"data: label {unknown[0]!r} in the {name} split ({origins.get(name, name)}) is not one of "
                f"the {whose} {len(labels)} labels ({shown})"
            )


def truncate_pair(first: list[int], second: list[int], budget: int) -> tuple[list[int], list[int]]:
    """Drop tokens from the end of the longer text until both fit in `budget` (BERT's longest_first)."""
    first, second = list(first), list(second)
    while len(first) + len(second) > budget:
        (first if len(first) > len(second) else second).pop()
    return first, second


def example_encoder(tokenizer, max_length: int, label_ids: dict) -> Callable[[dict], dict]:
    """A batched `map` function: text (, text_pair) → input_ids = [cls] text [sep] pair [eos],
    at most max_length ids; label → its id. Special tokens the tokenizer lacks are left out
    (a missing sep or eos is replaced by the other: GPT-2 has only eos, BERT only sep)."""
    sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    end_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    start, sep, end = ([i] if i is not None else [] for i in (tokenizer.cls_token_id, sep_id, end_id))

    def encode(batch: dict[str, list]) -> dict[str, list]:
        pair = "text_pair" in batch
        budget = max_length - len(start) - len(end) - (len(sep) if pair else 0)
        if budget < 1:
            raise ConfigError(f"data.max_length={max_length} leaves no room for text besides the special tokens")
        first = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
        if pair:
            second = tokenizer(batch["text_pair"], add_special_tokens=False)["input_ids"]
            rows = [start + a + sep + b + end for a, b in (truncate_pair(a, b, budget) for a, b in zip(first, second))]
        else:
            rows = [start + a[:budget] + end for a in first]
        return {"input_ids": rows, "label": [label_ids[label] for label in batch["label"]]}

    return encode


class ClassificationDataModule(TokenizedDataModule):
    """Labelled examples for objective=classification. `prepare()` also makes the labels and their
    train counts, which the objective needs."""

    def __init__(self, source: Any, tokenizer: DictConfig | dict, max_length: int, batch_size: int,
                 max_train_examples: int | None = None, labels: list | None = None, **common: Any) -> None:
        super().__init__(source, tokenizer, batch_size, **common)
        self.max_length = max_length
        self.max_train_examples = max_train_examples
        self.given_labels = list(labels) if labels is not None else None
        self.labels: list = []
        self.label_counts: list[int] = []
        self.examples: dict[str, Dataset] = {}
        self.split_origins: dict[str, str] = {}

    def load_corpus(self) -> Corpus:
        corpus = self.source.load()
        if self.max_train_examples:
            train = corpus.splits["train"]
            corpus.splits["train"] = train.select(range(min(self.max_train_examples, len(train))))
        self.split_origins = corpus.origins
        self.labels = self.given_labels or sorted(set(corpus.splits["train"]["label"][:]))
        check_labels(corpus.splits, self.labels, corpus.origins, "checkpoint's" if self.given_labels else "train split's")
        return corpus

    def cache_parts(self) -> dict:
        return {"labels": self.labels, "max_length": self.max_length, "max_train_examples": self.max_train_examples,
                "shape": "classification"}

    def after_prepare(self) -> None:
        self.label_counts = np.bincount(self.examples["train"]["label"][:], minlength=len(self.labels)).tolist()

    def describe(self) -> str:
        return f"{len(self.labels)} labels; " + ", ".join(f"{name} {len(ds)} examples" for name, ds in self.examples.items())

    def build_into(self, corpus: Corpus, tokenizer_cfg: dict, directory: Path) -> None:
        self.build_arrays(corpus, tokenizer_cfg)
        try:
            self.save_cache(directory)
        except OSError as err:
            raise cannot_write(directory, "the preprocessed examples", err) or err

    def build_arrays(self, corpus: Corpus, tokenizer_cfg: dict) -> None:
        splits = corpus.splits
        train = splits["train"]
        texts = train["text"][:] + (train["text_pair"][:] if "text_pair" in train.column_names else [])
        self.tokenizer = instantiate(tokenizer_cfg, texts=texts)
        encode = example_encoder(self.tokenizer, self.max_length, {label: i for i, label in enumerate(self.labels)})
        self.examples = {
            name: split.map(
                encode, batched=True, batch_size=1000, remove_columns=split.column_names,
                keep_in_memory=True, num_proc=self.num_proc, desc=f"tokenizing {name}",
            )
            for name, split in splits.items()
        }

    def save_cache(self, directory: Path) -> None:
        self.tokenizer.save_pretrained(directory / "tokenizer")
        with no_datasets_bars():
            DatasetDict(self.examples).save_to_disk(str(directory / "examples"))

    def load_cache(self, directory: Path) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(directory / "tokenizer"))
        self.examples = dict(load_from_disk(str(directory / "examples")))

    def has_split(self, name: str) -> bool:
        return name in self.examples

    def _examples(self, name: str) -> Dataset:
        if not self.examples:
            raise RuntimeError("ClassificationDataModule.prepare() must run before the loaders are asked for")
        return self.examples[name]

    def train_dataloader(self) -> DataLoader:
        train = self._examples("train")
        return self._train_loader(train, len(train))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._examples("validation"))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._examples("test"))
