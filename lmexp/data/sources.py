"""Where raw text comes from: local files, the Python standard library, or a `datasets` hub name.

Every source is a small class built by Hydra (`_target_`) whose `load()` returns a `Corpus`:
the splits `train` / `validation` / `test` as `datasets.DatasetDict` with a `text` column
(and `label` for labelled data), plus a fingerprint of the content that keys the
preprocessing cache and goes into the run record.
"""

from __future__ import annotations

import hashlib
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset, DatasetDict
from datasets.table import InMemoryTable

from lmexp.console import no_datasets_bars
from lmexp.data.files import resolve_files
from lmexp.errors import ConfigError

SPLITS = ("train", "validation", "test")


@dataclass
class Corpus:
    splits: DatasetDict
    fingerprint: str
    # Where each split came from, for the run record (e.g. {"test": "dev.tsv"}); empty if not said.
    origins: dict[str, str] = field(default_factory=dict)


@dataclass
class SplitSpec:
    """How to carve validation/test out of train when no files are given for them.

    `by="document"`: a seeded random split of the documents (the same for every training
    seed, so a seed sweep compares models on one validation set).
    `by="position"`: contiguous slices of the joined train text — first train, then
    validation, then test — as nanoGPT does for a single-file corpus.
    """

    val_fraction: float = 0.05
    test_fraction: float = 0.05
    by: str = "document"
    seed: int = 0


def as_split_spec(split: "SplitSpec | Mapping | None") -> SplitSpec:
    if split is None or isinstance(split, SplitSpec):
        return split or SplitSpec()
    try:
        return SplitSpec(**split)
    except TypeError as err:
        raise ConfigError(f"data.split: {err} (keys: val_fraction, test_fraction, by, seed)") from None


def read_documents(files: list[Path], document: str, key: str, hasher: "hashlib._Hash") -> list[str]:
    """Read files as one document per file or per non-empty line, hashing the bytes read."""
    if document not in ("file", "line"):
        raise ConfigError(f"{key}.document must be 'file' or 'line', got '{document}'")
    docs: list[str] = []
    for path in files:
        raw = path.read_bytes()
        hasher.update(str(path.name).encode() + b"\0" + raw)
        text = raw.decode("utf-8", errors="replace")
        if document == "file":
            if text.strip():
                docs.append(text)
        else:
            docs.extend(line for line in text.splitlines() if line.strip())
    if not docs:
        raise ConfigError(f"{key}: the files {[str(f) for f in files][:3]} contain no text")
    return docs


def split_documents(docs: list[str], spec: SplitSpec) -> dict[str, list[str]]:
    """Carve validation and test out of the train documents (see SplitSpec)."""
    held_out = spec.val_fraction + spec.test_fraction
    if not 0 <= held_out < 1:
        raise ConfigError(f"data.split: val_fraction + test_fraction must be in [0, 1), got {held_out}")
    if spec.by == "position":
        text = "\n\n".join(docs)
        a = int(len(text) * (1 - held_out))
        b = int(len(text) * (1 - spec.test_fraction))
        parts = {"train": [text[:a]], "validation": [text[a:b]], "test": [text[b:]]}
        return {name: part for name, part in parts.items() if part[0]}
    if spec.by != "document":
        raise ConfigError(f"data.split.by must be 'document' or 'position', got '{spec.by}'")
    # At least one document for each split asked for, so small corpora still validate.
    n_val = max(1, round(len(docs) * spec.val_fraction)) if spec.val_fraction > 0 else 0
    n_test = max(1, round(len(docs) * spec.test_fraction)) if spec.test_fraction > 0 else 0
    if len(docs) - n_val - n_test < 1:
        raise ConfigError(
            f"data: {len(docs)} document(s) are too few to split by document; "
            "use data.split.by=position or give data.val_files"
        )
    import random

    order = list(range(len(docs)))
    random.Random(spec.seed).shuffle(order)
    val_idx, test_idx = order[:n_val], order[n_val : n_val + n_test]
    train_idx = sorted(order[n_val + n_test :])
    parts = {
        "train": [docs[i] for i in train_idx],
        "validation": [docs[i] for i in sorted(val_idx)],
        "test": [docs[i] for i in sorted(test_idx)],
    }
    return {name: part for name, part in parts.items() if part}


def carve_missing_splits(parts: dict[str, Dataset], spec: SplitSpec) -> list[str]:
    """Cut the validation/test splits missing from `parts` out of parts["train"] (a seeded
    random split of the rows); returns the names of the splits carved."""
    missing = [s for s in ("validation", "test") if s not in parts]
    val_fraction = spec.val_fraction if "validation" in missing else 0.0
    test_fraction = spec.test_fraction if "test" in missing else 0.0
    held = val_fraction + test_fraction
    if held <= 0:
        return []
    cut = parts["train"].train_test_split(test_size=held, seed=spec.seed, shuffle=True)
    parts["train"] = cut["train"]
    if val_fraction and test_fraction:
        rest = cut["test"].train_test_split(test_size=test_fraction / held, seed=spec.seed)
        parts["validation"], parts["test"] = rest["train"], rest["test"]
        return ["validation", "test"]
    carved = "validation" if val_fraction else "test"
    parts[carved] = cut["test"]
    return [carved]


class TextFiles:
    """Local text files: globs for train and, optionally, validation and test.

    `document="file"`: one document per file; `"line"`: one per non-empty line.
    Splits without files are carved out of train according to `split`.
    """

    def __init__(
        self,
        train_files: str | list[str],
        val_files: str | list[str] | None = None,
        test_files: str | list[str] | None = None,
        document: str = "file",
        split: SplitSpec | dict | None = None,
    ) -> None:
        self.files = {
            "train": resolve_files(train_files, "data.train_files"),
            "validation": resolve_files(val_files, "data.val_files"),
            "test": resolve_files(test_files, "data.test_files"),
        }
        self.document = document
        self.split = as_split_spec(split)

    def load(self) -> Corpus:
        hasher = hashlib.sha256(f"{self.document}|{self.split}".encode())
        given = {
            name: read_documents(files, self.document, f"data.{name}_files", hasher)
            for name, files in self.files.items()
            if files
        }
        carve = SplitSpec(
            val_fraction=0.0 if "validation" in given else self.split.val_fraction,
            test_fraction=0.0 if "test" in given else self.split.test_fraction,
            by=self.split.by,
            seed=self.split.seed,
        )
        train = given.pop("train", None)  # none: scoring only (lmexp-eval), the other splits as given
        parts = split_documents(train, carve) if train is not None else {}
        parts.update(given)
        fingerprint = hasher.hexdigest()[:16]
        # Fingerprinted by our content hash: datasets would otherwise hash the table by pickling it.
        splits = DatasetDict({
            name: Dataset(InMemoryTable.from_pydict({"text": parts[name]}), fingerprint=f"{fingerprint}-{name}")
            for name in SPLITS if name in parts
        })
        return Corpus(splits=splits, fingerprint=fingerprint)


def python_stdlib_files() -> list[str]:
    """The .py files of the running Python's standard library, without tests and site-packages.

    About 14 MB of real text present on every machine: the embedded default corpus.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
    files = [
        str(path)
        for path in root.rglob("*.py")
        if not skip.intersection(path.relative_to(root).parts[:-1])
    ]
    if not files:
        raise ConfigError(f"data=default: no Python source files found under {root}")
    return sorted(files)


class PythonStdlib(TextFiles):
    """The embedded default corpus: the standard library's source files, split by file."""

    def __init__(self, split: SplitSpec | dict | None = None, max_files: int | None = None) -> None:
        files = python_stdlib_files()
        super().__init__(train_files=files[:max_files] if max_files else files, document="file", split=split)


def load_hub(path: str, name: str | None = None, key: str = "data.path", **options) -> DatasetDict:
    """`datasets.load_dataset(path, name, **options)`, its usual failures as one-line errors."""
    from datasets import load_dataset

    try:
        with no_datasets_bars():
            return load_dataset(path, name, **options)
    except FileNotFoundError as err:
        raise ConfigError(f"{key}={path}: {str(err).splitlines()[0]}") from None
    except ConnectionError as err:
        raise ConfigError(f"{key}={path}: cannot reach the hub ({err}); use local data_files") from None


class HubDataset:
    """Anything `datasets.load_dataset` reads: a hub name online, or `text`/`csv`/`json` with
    local `data_files`. `splits` maps our split names to the data set's split names."""

    def __init__(
        self,
        path: str,
        name: str | None = None,
        data_files: dict | str | list | None = None,
        text_column: str = "text",
        splits: dict | None = None,
        split: SplitSpec | dict | None = None,
        cache_dir: str | None = None,
    ) -> None:
        self.path, self.name, self.data_files = path, name, data_files
        self.text_column = text_column
        self.split_names = dict(splits or {"train": "train", "validation": "validation", "test": "test"})
        self.split = as_split_spec(split)
        self.cache_dir = cache_dir

    def load(self) -> Corpus:
        data_files = self.data_files
        if isinstance(data_files, Mapping):
            data_files = {k: (v if isinstance(v, str) else list(v)) for k, v in data_files.items() if v is not None} or None
        elif data_files is not None and not isinstance(data_files, str):
            data_files = list(data_files)
        loaded = load_hub(self.path, self.name, data_files=data_files, cache_dir=self.cache_dir)
        hasher = hashlib.sha256(f"{self.path}|{self.name}|{self.split}".encode())
        parts: dict[str, Dataset] = {}
        for ours, theirs in self.split_names.items():
            if theirs is None or theirs not in loaded:
                continue
            ds = loaded[theirs]
            if self.text_column not in ds.column_names:
                raise ConfigError(
                    f"data.text_column={self.text_column} is not a column of {self.path} "
                    f"split '{theirs}' (columns: {ds.column_names})"
                )
            ds = ds.select_columns([self.text_column])
            if self.text_column != "text":
                ds = ds.rename_column(self.text_column, "text")
            with no_datasets_bars():
                ds = ds.filter(lambda batch: [bool(t and t.strip()) for t in batch["text"]], batched=True)
            hasher.update(f"{ours}:{ds._fingerprint}".encode())
            parts[ours] = ds
        if "train" not in parts:
            raise ConfigError(f"data: {self.path} has no split named '{self.split_names['train']}' (has {list(loaded)})")
        carve_missing_splits(parts, self.split)
        splits = DatasetDict({name: parts[name] for name in SPLITS if name in parts})
        return Corpus(splits=splits, fingerprint=hasher.hexdigest()[:16])


class WikiText:
    """WikiText from local `wiki.{train,valid,test}.tokens` under `path`, else from the hub.

    One document per non-empty line, as the hub version has it. `val_files=null` carves the
    validation split out of train (e.g. when wiki.valid.tokens itself is used for training).
    """

    def __init__(self, path: str | None = None, hub_config: str = "wikitext-2-raw-v1",
                 train_files: str | None = None, val_files: str | None = "wiki.valid.tokens",
                 test_files: str | None = "wiki.test.tokens", split: SplitSpec | dict | None = None) -> None:
        self.path, self.hub_config, self.split = path, hub_config, split
        self.train_files, self.val_files, self.test_files = train_files, val_files, test_files

    def load(self) -> Corpus:
        if self.path is None:
            return HubDataset("wikitext", self.hub_config, split=self.split).load()
        root = Path(self.path).expanduser()
        if not root.is_dir():
            raise ConfigError(f"data.path={self.path}: not a directory (expected wiki.*.tokens files in it)")
        return TextFiles(
            train_files=str(root / self.train_files) if self.train_files else None,
            val_files=str(root / self.val_files) if self.val_files else None,
            test_files=str(root / self.test_files) if self.test_files else None,
            document="line",
            split=self.split,
        ).load()
