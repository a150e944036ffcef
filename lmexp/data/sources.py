"""Where raw text comes from: local files, the Python standard library, or a `datasets` hub name.

Every source is a small class built by Hydra (`_target_`) whose `load()` returns a `Corpus`: a
fingerprint of the content that keys the preprocessing cache and goes into the run record, and
the splits `train` / `validation` / `test`, either streamed as blocks of text (local files,
streamed hub sets) or as a `datasets.DatasetDict` with a `text` column (and `label` for
labelled data).
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import itertools
import os
import random
import sysconfig
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lmexp.console import no_datasets_bars
from lmexp.data.files import resolve_files
from lmexp.errors import ConfigError
from lmexp.machine_cache import cache_home, read_json, write_json

if TYPE_CHECKING:  # `datasets` is imported where a source builds one: a token-store run never needs it
    from datasets import Dataset, DatasetDict

SPLITS = ("train", "validation", "test")


# A piece of streamed text: (split, text, whether it ends its document). A document may come in
# several pieces (a big file read in chunks, the slices of a position split).
Piece = tuple[str, str, bool]
# Streamed text as it is handed on: (split, texts, ends): texts of one split in order, each ending
# its document except the last, which ends it if `ends`; the first may end a document an earlier
# block left unended. Many documents at a time (all the lines of a chunk of a file), so that the
# per-document work is done by C loops (str.splitlines, list slices), not Python ones.
Block = tuple[str, list[str], bool]
# Documents without their split: (texts, ends), as in a Block.
Documents = tuple[list[str], bool]
# Files are read this many bytes at a time, so no file is ever held whole.
READ_CHUNK = 2**23
# Up to this many documents, a split by document is the exact seeded shuffle it always was; beyond,
# each document is drawn into a split on its own (seeded), so the split streams in constant memory.
EXACT_SPLIT_DOCS = 2**22
# Text files bigger than this in all have their fingerprint remembered (see files_fingerprint).
REMEMBER_FINGERPRINT_BYTES = 2**28


@dataclass
class Corpus:
    """The text of a data set. LM data streams it (`blocks()`): from `stream` when the source
    streams, else from the `splits` datasets; classification reads `splits` as a whole."""

    splits: DatasetDict | None = None
    fingerprint: str = ""
    # Where each split came from, for the run record (e.g. {"test": "dev.tsv"}); empty if not said.
    origins: dict[str, str] = field(default_factory=dict)
    stream: Callable[[], Iterator[Block]] | None = None
    # About how many characters of train text there are, if known without reading them (the
    # tokenizer's sample rate); None: unknown.
    train_chars: int | None = None

    def blocks(self) -> Iterator[Block]:
        if self.stream is not None:
            return self.stream()
        return dataset_blocks(self.splits.items())

    def pieces(self) -> Iterator[Piece]:
        return block_pieces(self.blocks())


def block_pieces(blocks: Iterable[Block]) -> Iterator[Piece]:
    """The texts of blocks one at a time."""
    for split, texts, ends in blocks:
        last = len(texts) - 1
        for i, text in enumerate(texts):
            yield split, text, ends or i < last


def non_blank(texts: Iterable[str | None]) -> list[str]:
    return [text for text in texts if text and text.strip()]


def dataset_blocks(splits: Iterable[tuple[str, Any]]) -> Iterator[Block]:
    """The non-blank texts of datasets (in memory, on disk or streamed), a batch at a time."""
    for name, dataset in splits:
        for batch in dataset.iter(batch_size=1000):
            if texts := non_blank(batch["text"]):
                yield name, texts, True


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


def held_out(spec: SplitSpec) -> float:
    held = spec.val_fraction + spec.test_fraction
    if not 0 <= held < 1:
        raise ConfigError(f"data.split: val_fraction + test_fraction must be in [0, 1), got {held}")
    if spec.by not in ("document", "position"):
        raise ConfigError(f"data.split.by must be 'document' or 'position', got '{spec.by}'")
    return held


def hash_files(files: list[Path], hasher: "hashlib._Hash") -> None:
    """Hash each file's name and bytes, a chunk at a time."""
    for path in files:
        hasher.update(str(path.name).encode() + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(READ_CHUNK):
                hasher.update(chunk)


def files_fingerprint(files: list[Path], salt: str) -> str:
    """A hash of `salt` and the files' names and bytes. Of files above REMEMBER_FINGERPRINT_BYTES in
    all, it is remembered (~/.cache/lmexp/fingerprints) under their paths, sizes and modification
    times, so the runs after the first of an unchanged big corpus start without reading it."""
    stats = [(str(path.resolve()), *((s := path.stat()).st_size, s.st_mtime_ns)) for path in files]
    memo = None
    if sum(stat[1] for stat in stats) > REMEMBER_FINGERPRINT_BYTES:
        memo = cache_home() / "fingerprints" / f"{hashlib.sha256(repr((salt, stats)).encode()).hexdigest()[:24]}.json"
        known = read_json(memo)
        if isinstance(known, str):
            return known
    hasher = hashlib.sha256(salt.encode())
    hash_files(files, hasher)
    fingerprint = hasher.hexdigest()[:16]
    if memo is not None:
        write_json(memo, fingerprint)
    return fingerprint


def file_texts(path: Path) -> Iterator[str]:
    """A file's text (UTF-8, bad bytes replaced) in chunks of about READ_CHUNK, each cut after a
    line break where there is one."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    carry = ""
    with open(path, "rb") as f:
        while True:
            raw = f.read(READ_CHUNK)
            text = carry + decoder.decode(raw, final=not raw)
            if not raw:
                if text:
                    yield text
                return
            cut = text.rfind("\n") + 1 or (len(text) if len(text) >= READ_CHUNK else 0)
            if cut:
                yield text[:cut]
            carry = text[cut:]


def file_documents(path: Path, document: str) -> Iterator[Documents]:
    """A file's documents: each non-blank line (those of a chunk at once), or the whole file (in
    pieces, the last ending it) unless it is blank."""
    if document == "line":
        for chunk in file_texts(path):
            if lines := non_blank(chunk.splitlines()):
                yield lines, True
        return
    held: list[str] = []  # leading blank pieces (kept: they are part of the text), then the latest
    blank = True
    for text in file_texts(path):
        blank = blank and not text.strip()
        held.append(text)
        if not blank:
            for earlier in held[:-1]:
                yield [earlier], False
            del held[:-1]
    if not blank:
        yield [held[-1]], True


def document_splits(n_docs: int | None, spec: SplitSpec) -> Iterator[str]:
    """The split of each train document, in order (see SplitSpec; `n_docs` None: not known)."""
    if held_out(spec) == 0:
        return itertools.repeat("train")
    if n_docs is None or n_docs > EXACT_SPLIT_DOCS:
        return drawn_splits(spec)
    # At least one document for each split asked for, so small corpora still validate.
    n_val = max(1, round(n_docs * spec.val_fraction)) if spec.val_fraction > 0 else 0
    n_test = max(1, round(n_docs * spec.test_fraction)) if spec.test_fraction > 0 else 0
    if n_docs - n_val - n_test < 1:
        raise ConfigError(
            f"data: {n_docs} document(s) are too few to split by document; "
            "use data.split.by=position or give data.val_files"
        )
    order = list(range(n_docs))
    random.Random(spec.seed).shuffle(order)
    names = ["train"] * n_docs
    for i in order[:n_val]:
        names[i] = "validation"
    for i in order[n_val: n_val + n_test]:
        names[i] = "test"
    return iter(names)


def drawn_splits(spec: SplitSpec) -> Iterator[str]:
    """Each document drawn into validation, test or train on its own, with a seeded generator:
    u < val_fraction is validation, else u < val_fraction + test_fraction test, else train."""
    rng = np.random.default_rng(spec.seed)
    bounds = [spec.val_fraction, spec.val_fraction + spec.test_fraction]
    names = np.array(["validation", "test", "train"], dtype=object)
    while True:
        yield from names[np.searchsorted(bounds, rng.random(2**16), side="right")].tolist()


def split_by_document(documents: Iterable[Documents], names: Iterator[str]) -> Iterator[Block]:
    """Each document (all its pieces) into the split `names` gives it, in order: a block of
    documents becomes a block per split."""
    unended = None  # the split of a document whose first pieces came in an earlier block
    for texts, ends in documents:
        starting = len(texts) - (unended is not None)  # documents that begin in this block
        splits = list(itertools.islice(names, starting))
        if unended is not None:
            splits.insert(0, unended)
        for name in dict.fromkeys(splits):  # each split once, in order of appearance
            mine = list(itertools.compress(texts, map(name.__eq__, splits)))
            yield name, mine, ends or name != splits[-1]
        unended = None if ends else splits[-1]


def split_by_position(documents: Iterable[Documents], n_docs: int, n_chars: int,
                      spec: SplitSpec) -> Iterator[Block]:
    """Slices of the train documents joined by blank lines: train, then validation, then test (each
    one document), streamed."""
    total = n_chars + 2 * (n_docs - 1)
    a = int(total * (1 - held_out(spec)))
    b = int(total * (1 - spec.test_fraction))
    parts = (("train", 0, a), ("validation", a, b), ("test", b, total))

    def segments() -> Iterator[str]:
        done = 0
        for texts, ends in documents:
            for i, text in enumerate(texts):
                yield text
                if ends or i < len(texts) - 1:
                    done += 1
                    if done < n_docs:
                        yield "\n\n"

    position = 0
    for segment in segments():
        end = position + len(segment)
        for name, lo, hi in parts:
            first, last = max(lo, position), min(hi, end)
            if first < last:
                yield name, [segment[first - position: last - position]], last == hi
        position = end


def split_documents(docs: list[str], spec: SplitSpec) -> dict[str, list[str]]:
    """Carve validation and test out of documents held in memory (see SplitSpec), exactly as a text
    files source does: a helper for sources of your own."""
    documents = [(docs, True)]
    if spec.by == "position":
        blocks = split_by_position(documents, len(docs), sum(map(len, docs)), spec)
    else:
        blocks = split_by_document(documents, document_splits(len(docs), spec))
    parts: dict[str, list[str]] = {}
    unended: dict[str, list[str]] = {}
    for name, text, ends in block_pieces(blocks):
        unended.setdefault(name, []).append(text)
        if ends:
            parts.setdefault(name, []).append("".join(unended.pop(name)))
    return {name: parts[name] for name in SPLITS if name in parts}


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
    Splits without files are carved out of train according to `split`. The files are read as
    they are tokenized, never held whole.
    """

    KEYS = {"train": "data.train_files", "validation": "data.val_files", "test": "data.test_files"}

    def __init__(
        self,
        train_files: str | list[str],
        val_files: str | list[str] | None = None,
        test_files: str | list[str] | None = None,
        document: str = "file",
        split: SplitSpec | dict | None = None,
    ) -> None:
        if document not in ("file", "line"):
            raise ConfigError(f"data.document must be 'file' or 'line', got '{document}'")
        self.files = {
            "train": resolve_files(train_files, "data.train_files"),
            "validation": resolve_files(val_files, "data.val_files"),
            "test": resolve_files(test_files, "data.test_files"),
        }
        self.document = document
        self.split = as_split_spec(split)
        self._train_counts: tuple[int, int] | None = None
        self._train_docs_up_to: dict[int, int] = {}

    def load(self) -> Corpus:
        """The fingerprint (a hash of the files' bytes); the text streams later, from `pieces`."""
        fingerprint = files_fingerprint([path for files in self.files.values() for path in files],
                                        f"{self.document}|{self.split}")
        size = sum(path.stat().st_size for path in self.files["train"])
        return Corpus(fingerprint=fingerprint, stream=self.blocks,
                      train_chars=int(size * (1 - held_out(self.carve_spec()))))

    def carve_spec(self) -> SplitSpec:
        """What is carved out of train: only the splits without files of their own."""
        return SplitSpec(
            val_fraction=0.0 if self.files["validation"] else self.split.val_fraction,
            test_fraction=0.0 if self.files["test"] else self.split.test_fraction,
            by=self.split.by,
            seed=self.split.seed,
        )

    def documents(self, name: str) -> Iterator[Documents]:
        """The documents of the files of split `name`, streamed; a split without text is an error."""
        empty = True
        for path in self.files[name]:
            for documents in file_documents(path, self.document):
                empty = False
                yield documents
        if empty:
            raise ConfigError(f"{self.KEYS[name]}: the files {[str(f) for f in self.files[name]][:3]} contain no text")

    def train_counts(self) -> tuple[int, int]:
        """Documents and characters of the train files: one pass, before the split can stream."""
        if self._train_counts is None:
            n_docs = n_chars = 0
            for texts, ends in self.documents("train"):
                n_docs += len(texts) - (not ends)
                n_chars += sum(map(len, texts))
            self._train_counts = n_docs, n_chars
        return self._train_counts

    def train_docs_up_to(self, limit: int) -> int:
        """Documents of the train files, counted up to limit + 1: beyond `limit` a split by document
        is drawn document by document, so a big corpus is not read once more just to be counted."""
        if limit not in self._train_docs_up_to:  # blocks() streams once per pass: count once
            n_docs = 0
            for texts, ends in self.documents("train"):
                n_docs += len(texts) - (not ends)
                if n_docs > limit:
                    break
            self._train_docs_up_to[limit] = min(n_docs, limit + 1)
        return self._train_docs_up_to[limit]

    def blocks(self) -> Iterator[Block]:
        spec = self.carve_spec()
        held_out(spec)
        if not self.files["train"]:
            pass  # data.train_files=null: scoring only (lmexp-eval), the other splits as given
        elif spec.by == "position":
            yield from split_by_position(self.documents("train"), *self.train_counts(), spec)
        else:
            n_docs = self.train_docs_up_to(EXACT_SPLIT_DOCS) if spec.val_fraction + spec.test_fraction > 0 else None
            yield from split_by_document(self.documents("train"), document_splits(n_docs, spec))
        for name in ("validation", "test"):
            if self.files[name]:
                yield from ((name, texts, ends) for texts, ends in self.documents(name))


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
    local `data_files`. `splits` maps our split names to the data set's split names.

    `streaming=True` reads the set with datasets' streaming mode as it is tokenized, never
    downloading or preparing it whole; validation/test missing from it are drawn document by
    document (seeded, see `drawn_splits`). Its fingerprint is the set's name, configuration and
    data files (with their sizes and times), not its content.
    """

    def __init__(
        self,
        path: str,
        name: str | None = None,
        data_files: dict | str | list | None = None,
        text_column: str = "text",
        splits: dict | None = None,
        split: SplitSpec | dict | None = None,
        cache_dir: str | None = None,
        streaming: bool = False,
    ) -> None:
        self.path, self.name, self.data_files = path, name, data_files
        self.streaming = streaming
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
        if self.streaming:
            return self.load_streaming(data_files)
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
        from datasets import DatasetDict

        splits = DatasetDict({name: parts[name] for name in SPLITS if name in parts})
        return Corpus(splits=splits, fingerprint=hasher.hexdigest()[:16], train_chars=parts["train"].data.nbytes)

    def load_streaming(self, data_files: dict | str | list | None) -> Corpus:
        loaded = load_hub(self.path, self.name, data_files=data_files, cache_dir=self.cache_dir, streaming=True)
        present = {ours: loaded[theirs] for ours, theirs in self.split_names.items()
                   if theirs is not None and theirs in loaded}
        if "train" not in present:
            raise ConfigError(f"data: {self.path} has no split named '{self.split_names['train']}' (has {list(loaded)})")
        hasher = hashlib.sha256(f"{self.path}|{self.name}|{self.split}|{sorted(present)}|streaming".encode())
        patterns = data_files.values() if isinstance(data_files, Mapping) else [data_files or []]
        for pattern in itertools.chain.from_iterable([p] if isinstance(p, str) else p for p in patterns):
            for path in sorted(glob.glob(os.path.expanduser(pattern), recursive=True)):
                stat = os.stat(path)
                hasher.update(f"{pattern}|{path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        return Corpus(fingerprint=hasher.hexdigest()[:16], stream=lambda: self.streamed_blocks(present))

    def streamed_blocks(self, present: dict[str, Any]) -> Iterator[Block]:
        carve = SplitSpec(val_fraction=0.0 if "validation" in present else self.split.val_fraction,
                          test_fraction=0.0 if "test" in present else self.split.test_fraction,
                          seed=self.split.seed)
        names = document_splits(None, carve)
        for ours, dataset in present.items():
            documents = ((texts, True) for texts in self.streamed_texts(ours, dataset))
            yield from split_by_document(documents, names if ours == "train" else itertools.repeat(ours))

    def streamed_texts(self, ours: str, dataset: Any) -> Iterator[list[str]]:
        """The non-blank texts of a streamed split, a batch at a time."""
        for batch in dataset.iter(batch_size=1000):
            if self.text_column not in batch:
                raise ConfigError(f"data.text_column={self.text_column} is not a column of {self.path} "
                                  f"split '{self.split_names[ours]}' (columns: {list(batch)})")
            if texts := non_blank(batch[self.text_column]):
                yield texts


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
