"""The token store: each split's token stream as numbered shards on disk, built as the text streams
by, in bounded memory, in `num_proc` processes, resumably; read back memory-mapped.

A store is one directory of the preprocessing cache (lmexp.data.cache):

    tokenizer/                 the tokenizer (save_pretrained)
    tokenizer_sample.json      how much text the tokenizer was trained on
    train-000000.npy ...       flat token arrays (uint16 below 65536 tokens, else int32), each
                               document followed by EOS, in corpus order
    index.json                 written last: the splits, their shards and token counts

The text of each split is cut into shards of about `shard_chars` characters at document
boundaries (a document longer than that, at a line break), so the shards, and so the bytes of
the store, depend on the text alone, never on `num_proc` or on interruptions. Every shard is
written to a temporary name and renamed; a shard already on disk is not tokenized again, so a
build that was killed goes on where it stopped and ends with the same bytes.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import json
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lmexp.data.sources import Block
from lmexp.errors import cannot_write

INDEX = "index.json"
# Bump when what the store holds or how it is cut changes, so old stores are not reused.
STORE_FORMAT = 1
# Default characters of text per shard: ~32 MB, so a shard's text and tokens stay far below 1 GB.
SHARD_CHARS = 2**25
# Longest text handed to the tokenizer at once: the pieces of one document (a file read in chunks,
# a position split) are joined up to this, since tokenizers' per-token bookkeeping costs ~50 bytes.
MAX_TEXT_CHARS = 2**22
# Texts per encode call, and at most this many characters: bounds the tokenizer's temporary memory.
ENCODE_BATCH, ENCODE_CHARS = 1000, 2**20


@dataclass
class Shard:
    """The text of one shard: `texts` in order, each followed by EOS except those listed in
    `continues` (a document cut into several texts; its last one ends it)."""

    split: str
    number: int
    texts: list[str] = field(default_factory=list)
    continues: list[int] = field(default_factory=list)
    chars: int = 0


def shard_name(split: str, number: int) -> str:
    return f"{split}-{number:06d}.npy"


def joined(blocks: Iterable[Block]) -> Iterator[Block]:
    """The blocks with the pieces of each document joined, at most ~MAX_TEXT_CHARS at a time: every
    text but the last of a block is a whole document, and so is the last when the block ends it."""
    parts: dict[str, list[str]] = collections.defaultdict(list)  # each split's unended document
    chars: dict[str, int] = collections.defaultdict(int)
    for split, texts, ends in blocks:
        whole = texts if ends else texts[:-1]  # the texts that end their documents (most)
        if whole and parts[split]:  # the first ends the document earlier blocks began
            whole = ["".join([*parts[split], whole[0]]), *whole[1:]]
            parts[split], chars[split] = [], 0
        if whole:
            yield split, whole, True
        if not ends:
            parts[split].append(texts[-1])
            chars[split] += len(texts[-1])
            if chars[split] >= MAX_TEXT_CHARS:
                yield split, ["".join(parts[split])], False
                parts[split], chars[split] = [], 0
    for split, rest in parts.items():
        if rest:  # a source always ends its documents; end an unended one here
            yield split, ["".join(rest)], True


class ShardCutter:
    """Cuts a stream of blocks into shards of ~shard_chars per split: a shard ends with the text
    that brings it to shard_chars or more."""

    def __init__(self, shard_chars: int) -> None:
        self.shard_chars = shard_chars
        self.open: dict[str, Shard] = {}
        self.count: dict[str, int] = collections.defaultdict(int)

    def add(self, split: str, texts: list[str], ends: bool) -> Iterator[Shard]:
        """The shards the block's texts fill (all but the last ending its document, the last if `ends`)."""
        upto = list(itertools.accumulate(map(len, texts)))  # characters of texts[:i + 1]
        start = 0
        while start < len(texts):
            shard = self.open.get(split)
            if shard is None:
                shard = self.open[split] = Shard(split, self.count[split])
                self.count[split] += 1
            before = upto[start - 1] if start else 0
            # The first text at which the shard reaches shard_chars, if one of the block does.
            stop = bisect.bisect_left(upto, self.shard_chars - shard.chars + before, lo=start) + 1
            stop = min(stop, len(texts))
            if stop == len(texts) and not ends:
                shard.continues.append(len(shard.texts) + stop - 1 - start)
            shard.texts.extend(texts[start:stop])
            shard.chars += upto[stop - 1] - before
            if shard.chars >= self.shard_chars:
                yield self.open.pop(split)
            start = stop

    def finish(self) -> Iterator[Shard]:
        for split in list(self.open):
            yield self.open.pop(split)


def encode_shard(tokenizer, shard: Shard, eos: int, dtype: np.dtype) -> np.ndarray:
    """The shard's tokens: every text encoded (no special tokens), EOS after each ended document."""
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)  # fast: no offsets
    continues = set(shard.continues)
    eos_list, nothing = [eos], []
    pieces = []
    start = 0
    while start < len(shard.texts):
        stop, chars = start, 0
        while stop < len(shard.texts) and stop - start < ENCODE_BATCH and (chars < ENCODE_CHARS or stop == start):
            chars += len(shard.texts[stop])
            stop += 1
        encodings = encode(shard.texts[start:stop], add_special_tokens=False)
        ids = itertools.chain.from_iterable(
            (e.ids, nothing if start + i in continues else eos_list) for i, e in enumerate(encodings))
        pieces.append(np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype))
        start = stop
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype)


def write_array(path: Path, array: np.ndarray, what: str) -> None:
    """np.save to a temporary name, then rename: a file under `path`'s name is always whole."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise cannot_write(path, what, err, needed_bytes=array.nbytes) or err


def write_json(path: Path, data: dict, what: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except OSError as err:
        raise cannot_write(path, what, err) or err


# The tokenizer of a worker process, set once by its initializer.
_WORKER: dict = {}


def _init_worker(tokenizer_json: str, eos: int, dtype: str, directory: str) -> None:
    from tokenizers import Tokenizer

    _WORKER.update(tokenizer=Tokenizer.from_str(tokenizer_json), eos=eos, dtype=np.dtype(dtype),
                   directory=Path(directory))


def _tokenize_and_write(shard: Shard) -> None:
    w = _WORKER
    array = encode_shard(w["tokenizer"], shard, w["eos"], w["dtype"])
    write_array(w["directory"] / shard_name(shard.split, shard.number), array,
                f"token shard {shard_name(shard.split, shard.number)}")


def write_shards(blocks: Iterable[Block], tokenizer, directory: Path, dtype: np.dtype,
                 shard_chars: int, num_proc: int | None) -> dict[str, list[str]]:
    """Tokenize the streamed blocks into shard files under `directory` (those already there are
    kept); returns each split's shard file names in order."""
    backend = tokenizer.backend_tokenizer
    backend.no_truncation()
    backend.no_padding()
    eos = tokenizer.eos_token_id
    cutter = ShardCutter(shard_chars)
    names: dict[str, list[str]] = collections.defaultdict(list)

    def todo(shards: Iterable[Shard]) -> Iterator[Shard]:
        for shard in shards:
            names[shard.split].append(shard_name(shard.split, shard.number))
            if not (directory / names[shard.split][-1]).exists():
                yield shard

    def all_shards() -> Iterator[Shard]:
        for split, texts, ends in joined(blocks):
            yield from todo(cutter.add(split, texts, ends))
        yield from todo(cutter.finish())

    if not num_proc or num_proc <= 1:
        _init_worker(backend.to_str(), eos, dtype.str, str(directory))
        for shard in all_shards():
            _tokenize_and_write(shard)
        return dict(names)
    # Fork: workers start at once and inherit nothing they would re-import. Each is one tokenizer
    # thread (TOKENIZERS_PARALLELISM=false), so num_proc says how many cores tokenize.
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        with multiprocessing.get_context("fork").Pool(
                num_proc, initializer=_init_worker, initargs=(backend.to_str(), eos, dtype.str, str(directory))) as pool:
            # At most 2 shards per process in flight (Pool.imap would read the whole corpus ahead).
            pending: collections.deque = collections.deque()
            for shard in all_shards():
                if len(pending) >= 2 * num_proc:
                    pending.popleft().get()
                pending.append(pool.apply_async(_tokenize_and_write, (shard,)))
            while pending:
                pending.popleft().get()
    finally:
        if previous is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous
    return dict(names)


def write_index(directory: Path, shards: dict[str, list[str]], dtype: np.dtype, facts: dict) -> None:
    """The index, last: each split's shards and their token counts (read from the .npy headers)."""
    splits = {
        split: {"shards": files, "tokens": [int(np.load(directory / f, mmap_mode="r").shape[0]) for f in files]}
        for split, files in shards.items()
    }
    write_json(directory / INDEX, {"format": STORE_FORMAT, "dtype": dtype.str, "splits": splits, **facts},
               "the token store's index")


class TokenStream:
    """One split's tokens as a single sequence over its shards, memory-mapped on first read (so a
    store opens in constant time, and a DataLoader worker pickles paths, not arrays)."""

    def __init__(self, paths: list[Path], lengths: list[int], arrays: list[np.ndarray] | None = None) -> None:
        self.paths = paths
        self.ends = np.cumsum(np.asarray(lengths, dtype=np.int64))
        self.starts = self.ends - np.asarray(lengths, dtype=np.int64)
        self._arrays = arrays

    @classmethod
    def from_array(cls, tokens: np.ndarray) -> "TokenStream":
        """A stream held in memory (generated data)."""
        return cls([], [len(tokens)], [tokens])

    @classmethod
    def open(cls, directory: Path, split: dict) -> "TokenStream":
        return cls([directory / name for name in split["shards"]], split["tokens"])

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_arrays": None if self.paths else self._arrays}

    def arrays(self) -> list[np.ndarray]:
        if self._arrays is None:
            self._arrays = [np.load(path, mmap_mode="r") for path in self.paths]
        return self._arrays

    def windows(self, starts: np.ndarray, length: int) -> np.ndarray:
        """Rows of `length` tokens starting at each of `starts`, as int64 [len(starts), length]."""
        starts = np.asarray(starts, dtype=np.int64)
        arrays = self.arrays()
        shard = np.searchsorted(self.ends, starts, side="right")
        first = shard[0] if len(shard) else 0
        if (shard == first).all() and (starts + length <= self.ends[first]).all():  # all in one shard
            local = starts - self.starts[first]
            return arrays[first][local[:, None] + np.arange(length)].astype(np.int64)
        rows = np.empty((len(starts), length), dtype=np.int64)
        for row, (start, i) in enumerate(zip(starts.tolist(), shard.tolist())):
            filled = 0
            while filled < length:  # a window across shards: its pieces from each
                offset = start + filled - int(self.starts[i])
                piece = arrays[i][offset: offset + length - filled]
                rows[row, filled: filled + len(piece)] = piece
                filled += len(piece)
                i += 1
        return rows


def open_store(directory: Path) -> tuple[dict, dict[str, TokenStream]]:
    """The index and each split's stream of a finished store."""
    index = json.loads((directory / INDEX).read_text())
    return index, {name: TokenStream.open(directory, split) for name, split in index["splits"].items()}
