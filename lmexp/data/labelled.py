"""Labelled examples for sequence classification.

Each source is built by Hydra (`_target_`); its `load()` returns a `Corpus` whose splits have a
`text` column (plus `text_pair` for sentence pairs) and a `label` column (strings or ints, as the
data has them), and whose `origins` say where each split came from, so the run record names the
split the test metrics were computed on.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, load_dataset
from datasets.exceptions import DatasetGenerationError

from lmexp.console import no_datasets_bars
from lmexp.data.sources import SPLITS, Corpus, SplitSpec, as_split_spec, carve_missing_splits, load_hub, resolve_files
from lmexp.errors import ConfigError

# File suffix → (datasets builder, its options). No NA parsing: a text "null" stays text. GLUE's
# TSVs have no quoting, so a quote character there is part of the text.
READERS = {
    ".csv": ("csv", {"keep_default_na": False}),
    ".tsv": ("csv", {"delimiter": "\t", "quoting": csv.QUOTE_NONE, "keep_default_na": False}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
}
FILE_KEYS = {"train": "data.train_files", "validation": "data.val_files", "test": "data.test_files"}


def as_examples(ds: Dataset, text_columns: Sequence[str], label_column: str, origin: str) -> Dataset:
    """The columns text (, text_pair) and label of a loaded split; class ids become their names."""
    for key, column in [*(("data.text_columns", c) for c in text_columns), ("data.label_column", label_column)]:
        if column not in ds.column_names:
            raise ConfigError(f"{key}: {origin} has no column '{column}' (columns: {', '.join(ds.column_names)})")
    labels = ds[label_column][:]  # a slice reads the column at once; iterating reads row by row
    feature = ds.features[label_column]
    if isinstance(feature, ClassLabel):
        if min(labels, default=0) < 0:
            raise ConfigError(f"data: {origin} is unlabelled (label -1); map that split to null in data.hub_splits")
        labels = feature.int2str(labels)
    if any(label is None or label == "" for label in labels):
        raise ConfigError(f"data.label_column={label_column}: {origin} has rows without a label")
    columns = {"text": [(t or "").strip() for t in ds[text_columns[0]][:]], "label": labels}
    if len(text_columns) == 2:
        columns["text_pair"] = [(t or "").strip() for t in ds[text_columns[1]][:]]
    return Dataset.from_dict(columns)


def carve_with_origins(parts: dict[str, Dataset], origins: dict[str, str], spec: SplitSpec) -> None:
    """Carve the missing validation/test splits out of train and say so in `origins`."""
    for name in carve_missing_splits(parts, spec):
        fraction = spec.val_fraction if name == "validation" else spec.test_fraction
        origins[name] = f"{fraction:.0%} of {origins['train']}, carved with data.split.seed={spec.seed}"


class LabelledFiles:
    """Labelled examples from local CSV/TSV/JSON/JSONL files (globs), or a hub data set (`hub`).

    `text_columns`: one column, or two for sentence pairs. Splits without files are carved out
    of train according to `split`; `hub_splits` maps our split names to the hub data set's.
    """

    def __init__(
        self,
        train_files: str | list[str] | None = None,
        val_files: str | list[str] | None = None,
        test_files: str | list[str] | None = None,
        hub: str | None = None,
        hub_config: str | None = None,
        hub_splits: Mapping | None = None,
        text_columns: Sequence[str] = ("text",),
        label_column: str = "label",
        split: SplitSpec | Mapping | None = None,
        cache_dir: str | None = None,
    ) -> None:
        if (train_files is None) == (hub is None):
            raise ConfigError("data: set exactly one of data.train_files (local files) and data.hub (a hub data set)")
        if not 1 <= len(text_columns) <= 2:
            raise ConfigError(f"data.text_columns: one column, or two for sentence pairs; got {list(text_columns)}")
        given = {"train": train_files, "validation": val_files, "test": test_files}
        self.files = {name: resolve_files(p, FILE_KEYS[name]) for name, p in given.items()} if hub is None else {}
        self.hub, self.hub_config = hub, hub_config
        self.hub_splits = dict(hub_splits or {"train": "train", "validation": "validation", "test": "test"})
        self.text_columns, self.label_column = list(text_columns), label_column
        self.split = as_split_spec(split)
        self.cache_dir = cache_dir

    def load(self) -> Corpus:
        hasher = hashlib.sha256(f"{self.text_columns}|{self.label_column}|{self.split}".encode())
        loaded, origins = self._read_files(hasher) if self.hub is None else self._read_hub(hasher)
        parts = {
            name: as_examples(ds, self.text_columns, self.label_column, origins[name]) for name, ds in loaded.items()
        }
        if self.files.get("test") and self.files["test"] == self.files["validation"]:
            origins["test"] += " (the validation files: the data has no separate labelled test split)"
        carve_with_origins(parts, origins, self.split)
        splits = DatasetDict({name: parts[name] for name in SPLITS if name in parts})
        return Corpus(splits=splits, fingerprint=hasher.hexdigest()[:16], origins=origins)

    def _read_files(self, hasher: "hashlib._Hash") -> tuple[dict[str, Dataset], dict[str, str]]:
        files = {name: paths for name, paths in self.files.items() if paths}
        suffixes = {path.suffix.lower() for paths in files.values() for path in paths}
        if len(suffixes) != 1 or next(iter(suffixes)) not in READERS:
            raise ConfigError(
                f"data.train_files: expected files of one kind, .csv, .tsv, .json or .jsonl; got {sorted(suffixes)}"
            )
        builder, options = READERS[suffixes.pop()]
        for paths in files.values():
            for path in paths:
                hasher.update(path.name.encode() + b"\0" + path.read_bytes())
        data_files = {name: [str(p) for p in paths] for name, paths in files.items()}
        origins = {name: ", ".join(p.name for p in paths) for name, paths in files.items()}
        try:
            with no_datasets_bars():
                loaded = load_dataset(builder, data_files=data_files, cache_dir=self.cache_dir, **options)
        except DatasetGenerationError as err:  # a malformed file: the parser's own complaint names the line
            cause = str(err.__cause__ or err).strip().splitlines()[-1]
            raise ConfigError(f"data: cannot read {', '.join(origins.values())} as {builder}: {cause}") from None
        return dict(loaded), origins

    def _read_hub(self, hasher: "hashlib._Hash") -> tuple[dict[str, Dataset], dict[str, str]]:
        loaded = load_hub(self.hub, self.hub_config, key="data.hub", cache_dir=self.cache_dir)
        if self.hub_splits.get("train") not in loaded:
            raise ConfigError(f"data.hub_splits.train: {self.hub} has no split '{self.hub_splits.get('train')}' "
                              f"(has {list(loaded)})")
        name = "/".join(filter(None, (self.hub, self.hub_config)))
        parts, origins = {}, {}
        for ours, theirs in self.hub_splits.items():
            if theirs is not None and theirs in loaded:
                parts[ours] = loaded[theirs]
                origins[ours] = f"{name} split '{theirs}'"
                hasher.update(f"{ours}:{parts[ours]._fingerprint}".encode())
        return parts, origins


def read_trec(paths: list[Path], fine: bool, key: str, hasher: "hashlib._Hash") -> Dataset:
    """`COARSE:fine question text` per line: the label is everything before the first space."""
    texts, labels = [], []
    for path in paths:
        raw = path.read_bytes()
        hasher.update(path.name.encode() + b"\0" + raw)
        # The original train file is Latin-1 with one non-ASCII byte; "replace" keeps it readable.
        for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            label, _, question = line.partition(" ")
            if ":" not in label or not question.strip():
                raise ConfigError(f"{key}: {path.name} line {number} is not 'COARSE:fine question': {line[:60]!r}")
            labels.append(label if fine else label.split(":", 1)[0])
            texts.append(question.strip())
    return Dataset.from_dict({"text": texts, "label": labels})


class TrecQuestions:
    """Li & Roth's TREC question classification files: 6 coarse classes, or the 50 fine ones
    (`fine=True`, labels like `NUM:dist`). There is no validation file: it is carved out of train
    according to `split` (a fixed seed, independent of the training seed)."""

    def __init__(self, train_files: str | list[str], test_files: str | list[str] | None = None,
                 fine: bool = False, split: SplitSpec | Mapping | None = None) -> None:
        self.files = {"train": resolve_files(train_files, "data.train_files"),
                      "test": resolve_files(test_files, "data.test_files")}
        self.fine = fine
        self.split = as_split_spec(split)

    def load(self) -> Corpus:
        hasher = hashlib.sha256(f"trec|{self.fine}|{self.split}".encode())
        parts = {name: read_trec(paths, self.fine, FILE_KEYS[name], hasher) for name, paths in self.files.items() if paths}
        origins = {name: ", ".join(p.name for p in paths) for name, paths in self.files.items() if paths}
        carve_with_origins(parts, origins, self.split)
        splits = DatasetDict({name: parts[name] for name in SPLITS if name in parts})
        return Corpus(splits=splits, fingerprint=hasher.hexdigest()[:16], origins=origins)
