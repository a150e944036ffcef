"""Sources, splits, packing and the preprocessing cache of lmexp/data/."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA

from lmexp.data import datamodule as datamodule_module
from lmexp.data.datamodule import LMDataModule
from lmexp.data.packing import TokenBlocks
from lmexp.data.sources import HubDataset, PythonStdlib, SplitSpec, TextFiles, python_stdlib_files, split_documents
from lmexp.data.token_store import TokenStream
from lmexp.errors import ConfigError

BYTE = {"_target_": "lmexp.data.tokenizers.build_tokenizer", "kind": "byte"}


def split_texts(corpus) -> dict[str, list[str]]:
    """Each split's documents, their streamed pieces joined."""
    texts, parts = {}, {}
    for split, text, ends in corpus.pieces():
        parts.setdefault(split, []).append(text)
        if ends:
            texts.setdefault(split, []).append("".join(parts.pop(split)))
    return texts


def all_rows(blocks) -> np.ndarray:
    return blocks.__getitems__(list(range(len(blocks)))).numpy()


def test_stdlib_corpus_is_real_python_without_tests_or_site_packages():
    files = python_stdlib_files()
    assert len(files) > 300
    assert not any("site-packages" in f or "/test/" in f for f in files)
    assert any(f.endswith("/json/decoder.py") for f in files)


def test_stdlib_split_is_deterministic_and_disjoint():
    first = PythonStdlib(max_files=60).load()
    second = PythonStdlib(max_files=60).load()
    assert first.fingerprint == second.fingerprint
    docs = split_texts(first)
    texts = {name: set(split) for name, split in docs.items()}
    assert texts["train"].isdisjoint(texts["validation"]) and texts["train"].isdisjoint(texts["test"])
    non_empty = sum(1 for f in python_stdlib_files()[:60] if open(f, encoding="utf-8", errors="replace").read().strip())
    assert sum(len(split) for split in docs.values()) == non_empty  # each file in exactly one split
    assert docs["train"] == split_texts(second)["train"]
    other_seed = PythonStdlib(max_files=60, split={"seed": 1}).load()
    assert set(split_texts(other_seed)["validation"]) != texts["validation"]


def test_text_files_by_line_and_given_splits(tmp_path):
    (tmp_path / "train.txt").write_text("alpha\n\nbeta\ngamma\n")
    (tmp_path / "valid.txt").write_text("delta\n")
    corpus = TextFiles(train_files=str(tmp_path / "train.txt"), val_files=str(tmp_path / "valid.txt"),
                       document="line", split={"test_fraction": 0.0, "val_fraction": 0.0}).load()
    assert split_texts(corpus) == {"train": ["alpha", "beta", "gamma"], "validation": ["delta"]}
    # The fingerprint follows the content.
    (tmp_path / "train.txt").write_text("alpha\nbeta\ngamma\nomega\n")
    changed = TextFiles(train_files=str(tmp_path / "train.txt"), val_files=str(tmp_path / "valid.txt"),
                        document="line", split={"test_fraction": 0.0, "val_fraction": 0.0}).load()
    assert changed.fingerprint != corpus.fingerprint


def test_a_big_corpus_fingerprint_is_remembered_until_its_files_change(tmp_path, monkeypatch):
    from lmexp.data import sources

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sources, "REMEMBER_FINGERPRINT_BYTES", 10)
    (tmp_path / "a.txt").write_text("alpha\nbeta\ngamma\n")
    first = TextFiles(train_files=str(tmp_path / "a.txt"), document="line").load().fingerprint
    reads = []
    real_hash = sources.hash_files
    monkeypatch.setattr(sources, "hash_files", lambda *args: reads.append(1) or real_hash(*args))
    assert TextFiles(train_files=str(tmp_path / "a.txt"), document="line").load().fingerprint == first
    assert reads == []  # unchanged: not read again
    (tmp_path / "a.txt").write_text("alpha\nbeta\ndeltas\n")
    assert TextFiles(train_files=str(tmp_path / "a.txt"), document="line").load().fingerprint != first
    assert reads == [1]


def test_position_split_is_contiguous_like_nanogpt(tmp_path, monkeypatch):
    # Files read in chunks of 7 bytes: the slices still cut the joined text at the same characters.
    monkeypatch.setattr("lmexp.data.sources.READ_CHUNK", 7)
    (tmp_path / "a.txt").write_text("abcdefghij\n" * 5)
    (tmp_path / "b.txt").write_text("klmnopqrst\n" * 4)
    corpus = TextFiles(train_files=str(tmp_path / "*.txt"), split={"val_fraction": 0.1, "test_fraction": 0.1,
                                                                    "by": "position"}).load()
    parts = split_texts(corpus)
    text = "abcdefghij\n" * 5 + "\n\n" + "klmnopqrst\n" * 4
    a, b = int(len(text) * 0.8), int(len(text) * 0.9)
    assert parts == {"train": [text[:a]], "validation": [text[a:b]], "test": [text[b:]]}
    docs = ["abcdefghij\n" * 5, "klmnopqrst\n" * 4]  # the same, of documents held in memory
    assert split_documents(docs, SplitSpec(val_fraction=0.1, test_fraction=0.1, by="position")) == parts


def test_too_few_documents_to_split_says_what_to_do(tmp_path):
    (tmp_path / "one.txt").write_text("one document")
    with pytest.raises(ConfigError, match="split.by=position"):
        list(TextFiles(train_files=str(tmp_path / "one.txt")).load().pieces())


def test_a_big_corpus_is_split_document_by_document_as_it_streams(tmp_path, monkeypatch):
    # Above EXACT_SPLIT_DOCS documents each is drawn into a split on its own (seeded): no
    # shuffle of every document, and the same split every time.
    monkeypatch.setattr("lmexp.data.sources.EXACT_SPLIT_DOCS", 100)
    (tmp_path / "lines.txt").write_text("".join(f"line {i}\n" for i in range(2000)))
    source = TextFiles(train_files=str(tmp_path / "lines.txt"), document="line", split={"val_fraction": 0.1})
    parts = split_texts(source.load())
    assert parts == split_texts(source.load())
    assert sorted(sum(parts.values(), [])) == sorted(f"line {i}" for i in range(2000))
    assert 150 < len(parts["validation"]) < 250 and 50 < len(parts["test"]) < 150
    assert source.train_docs_up_to(100) == 101  # counted only as far as the choice needs


def test_hub_source_loads_local_json_with_a_text_column(tmp_path):
    rows = "\n".join(f'{{"body": "document number {i}", "id": {i}}}' for i in range(40))
    (tmp_path / "data.jsonl").write_text(rows)
    corpus = HubDataset("json", data_files={"train": str(tmp_path / "data.jsonl")}, text_column="body",
                        cache_dir=str(tmp_path / "hf")).load()
    assert set(corpus.splits) == {"train", "validation", "test"}
    assert sum(len(s) for s in corpus.splits.values()) == 40
    assert corpus.splits["train"].column_names == ["text"]
    with pytest.raises(ConfigError, match="data.text_column=missing"):
        HubDataset("json", data_files={"train": str(tmp_path / "data.jsonl")}, text_column="missing",
                   cache_dir=str(tmp_path / "hf")).load()


def test_blocks_and_windows_read_across_shards_and_drop_only_the_tail(tmp_path):
    lengths = [4, 1, 5]  # shards of 4, 1 and 5 tokens: one stream 0..9
    paths = []
    for i, n in enumerate(lengths):
        paths.append(tmp_path / f"s{i}.npy")
        np.save(paths[-1], np.arange(sum(lengths[:i]), sum(lengths[:i + 1]), dtype=np.uint16))
    stream = TokenStream(paths, lengths)
    blocks = TokenBlocks(stream, 3)
    assert len(blocks) == 3 and all_rows(blocks).tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    batch = blocks.__getitems__([2, 0])
    assert batch.dtype == torch.int64 and batch.tolist() == [[6, 7, 8], [0, 1, 2]]
    from lmexp.data.packing import TokenWindows

    windows = TokenWindows(stream, 4, 8)  # starts 0..4 within the first 8 tokens
    assert len(windows) == 5 and windows.__getitems__([4, 1]).tolist() == [[4, 5, 6, 7], [1, 2, 3, 4]]
    # A DataLoader worker gets the paths, not the arrays.
    import pickle

    assert pickle.loads(pickle.dumps(stream))._arrays is None


def test_datamodule_packs_documents_with_eos_and_caches(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("hello world " * 20)
    (tmp_path / "b.txt").write_text("second file " * 20)
    source = TextFiles(train_files=str(tmp_path / "*.txt"), split={"val_fraction": 0.5, "test_fraction": 0.0})
    dm = LMDataModule(source, BYTE, block_size=9, batch_size=2, cache_dir=str(tmp_path / "cache"))
    dm.prepare()
    assert not dm.cache_hit
    eos = dm.tokenizer.eos_token_id
    rows = all_rows(dm.blocks["train"])
    assert (rows == eos).sum() <= 1 and rows.shape[1] == 9
    decoded = dm.tokenizer.decode(rows[0].tolist())
    assert decoded in ("hello world " * 20 + "second file " * 20)

    # A second identical datamodule, of another block size too, trains no tokenizer and tokenizes nothing.
    monkeypatch.setattr(datamodule_module, "write_shards", lambda *a, **k: pytest.fail("re-tokenized"))
    again = LMDataModule(source, BYTE, block_size=9, batch_size=2, cache_dir=str(tmp_path / "cache"))
    again.prepare()
    assert again.cache_hit
    assert np.array_equal(all_rows(again.blocks["train"]), rows)
    other = LMDataModule(source, BYTE, block_size=4, batch_size=2, cache_dir=str(tmp_path / "cache"))
    other.prepare()
    assert other.cache_hit
    assert all_rows(other.blocks["train"]).ravel()[:rows.size].tolist() == rows.ravel().tolist()


def test_split_smaller_than_one_block_is_a_config_error(tmp_path):
    (tmp_path / "a.txt").write_text("tiny")
    source = TextFiles(train_files=str(tmp_path / "a.txt"), split={"val_fraction": 0.0, "test_fraction": 0.0})
    with pytest.raises(ConfigError, match="data.block_size=64"):
        LMDataModule(source, BYTE, block_size=64, batch_size=2).prepare()


def test_random_windows_start_anywhere_and_are_seeded():
    from lmexp.data.packing import ResumableRandomSampler, TokenWindows

    windows = TokenWindows(TokenStream.from_array(np.arange(100)), 5, 100)
    assert len(windows) == 96 and windows.__getitems__([0, 95]).tolist() == [[0, 1, 2, 3, 4], [95, 96, 97, 98, 99]]
    sampler = ResumableRandomSampler(20, seed=3, population=len(windows))
    first = list(sampler)
    assert len(first) == 20 and max(first) < 96 and len(set(o % 5 for o in first)) > 1  # not block-aligned
    sampler.skip = 7
    assert list(sampler) == first[7:]
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_blocks_make_the_shards_their_texts_make_one_at_a_time(monkeypatch):
    """Blocks of texts are joined and cut into shards exactly as the same texts were one by one."""
    from lmexp.data import token_store

    monkeypatch.setattr(token_store, "MAX_TEXT_CHARS", 40)
    rng = np.random.default_rng(0)
    texts = ["" if rng.random() < 0.05 else f"<{i}>" + "x" * int(rng.integers(30)) for i in range(3000)]
    pieces = [(str(rng.choice(["train", "validation"])), text, bool(rng.random() < 0.7)) for text in texts]
    blocks = []  # pieces of one split in a row, a block closed after an unended one or at random
    for split, text, ends in pieces:
        if blocks and blocks[-1][0] == split and blocks[-1][2] and rng.random() < 0.8:
            blocks[-1] = (split, [*blocks[-1][1], text], ends)
        else:
            blocks.append((split, [text], ends))
    assert max(len(texts) for _, texts, _ in blocks) > 5

    cutter = token_store.ShardCutter(200)
    shards = [*(shard for block in token_store.joined(blocks) for shard in cutter.add(*block)), *cutter.finish()]
    reference = reference_shards(reference_joined(pieces), 200)
    assert [(s.split, s.number, s.texts, s.continues) for s in shards] == reference
    assert len(reference) > 20 and any(continues for *_, continues in reference)


def reference_joined(pieces):
    """What token_store.joined did one piece at a time: each document's pieces joined, at most
    ~MAX_TEXT_CHARS at a time."""
    from lmexp.data import token_store

    parts, chars = {}, {}
    for split, text, ends in pieces:
        if ends and not parts.get(split):
            yield split, text, True
            continue
        parts.setdefault(split, []).append(text)
        chars[split] = chars.get(split, 0) + len(text)
        if ends or chars[split] >= token_store.MAX_TEXT_CHARS:
            yield split, "".join(parts.pop(split)), ends
            chars[split] = 0
    for split, rest in parts.items():
        yield split, "".join(rest), True


def reference_shards(texts, shard_chars):
    """What ShardCutter did one text at a time: each split's shard ends with the text that brings it
    to shard_chars; (split, number, texts, the indices of the texts that do not end a document)."""
    shards, current = [], {}
    for split, text, ends in texts:
        if split not in current:
            current[split] = {"split": split, "number": sum(s["split"] == split for s in shards),
                              "texts": [], "continues": [], "chars": 0}
        shard = current[split]
        if not ends:
            shard["continues"].append(len(shard["texts"]))
        shard["texts"].append(text)
        shard["chars"] += len(text)
        if shard["chars"] >= shard_chars:
            shards.append(current.pop(split))
    return [(s["split"], s["number"], s["texts"], s["continues"]) for s in [*shards, *current.values()]]


def test_a_block_of_documents_goes_to_the_splits_its_documents_are_drawn_into():
    from lmexp.data.sources import block_pieces, split_by_document

    documents = [(["a", "b", "c1"], False), (["c2"], False), (["c3", "d"], True), (["e", "f1"], False), (["f2"], True)]
    names = iter(["train", "test", "validation", "train", "test", "validation"])  # of a, b, c, d, e, f
    by_split = {}
    for split, text, ends in block_pieces(split_by_document(documents, names)):
        by_split.setdefault(split, []).append((text, ends))
    assert by_split == {"train": [("a", True), ("d", True)], "test": [("b", True), ("e", True)],
                        "validation": [("c1", False), ("c2", False), ("c3", True), ("f1", False), ("f2", True)]}


def test_a_line_store_is_the_lines_one_by_one(tmp_path):
    """Every non-blank line (splitlines' breaks, blank and bad bytes included) tokenized and ended
    by EOS, cut into shards after the line that fills one: the store a line-by-line build makes."""
    lines = [f"line {i} " + "word " * (i % 23) for i in range(2000)]
    text = "\n".join(line if i % 7 else f"{line}\n  \n\x0cform\u2028feed" for i, line in enumerate(lines))
    (tmp_path / "a.txt").write_bytes(text.encode() + b"\r\nbad \xff byte\r\n")
    (tmp_path / "b.txt").write_text("\n\n" + text[:20_000])
    source = TextFiles(train_files=str(tmp_path / "*.txt"), document="line",
                       split={"val_fraction": 0.0, "test_fraction": 0.0})
    dm = LMDataModule(source, BYTE, block_size=8, batch_size=2, cache_dir=str(tmp_path / "cache"), shard_chars=5000)
    dm.prepare()
    expected, shard, chars = [], [], 0
    for name in ("a.txt", "b.txt"):
        for line in (tmp_path / name).read_bytes().decode("utf-8", errors="replace").splitlines():
            if line.strip():
                shard += [*dm.tokenizer(line, add_special_tokens=False)["input_ids"], dm.tokenizer.eos_token_id]
                chars += len(line)
                if chars >= 5000:
                    expected.append(shard)
                    shard, chars = [], 0
    expected.append(shard)
    store = Path(dm.preprocessing_info["store"])
    assert [np.load(path).tolist() for path in sorted(store.glob("train-*.npy"))] == expected


def test_shards_and_processes_do_not_change_the_store(tmp_path, small_corpus):
    """num_proc=2 over many tiny shards gives the blocks one process gives over one shard."""
    source = TextFiles(train_files=f"{small_corpus}/*.txt", document="line")
    one = LMDataModule(source, BYTE, block_size=16, batch_size=2, cache_dir=str(tmp_path / "a"))
    many = LMDataModule(source, BYTE, block_size=16, batch_size=2, cache_dir=str(tmp_path / "b"), shard_chars=3000,
                        num_proc=2)
    one.prepare()
    many.prepare()
    assert len(list(Path(many.preprocessing_info["store"]).glob("train-*.npy"))) > 20
    for split in ("train", "validation", "test"):
        assert np.array_equal(all_rows(one.blocks[split]), all_rows(many.blocks[split])), split


def test_a_killed_build_keeps_its_finished_shards_and_ends_identical(tmp_path):
    from lmexp.tools.prepare import prepare

    corpus = tmp_path / "corpus.txt"
    corpus.write_text((SHARED_DATA / "tinyshakespeare" / "input.txt").read_text() * 2)
    args = ["data=text_files", f"data.train_files={corpus}", "data.document=line", "tokenizer=byte",
            "data.shard_chars=20000"]
    # The uninterrupted build, in 2 processes (the store does not depend on them).
    reference = Path(prepare([*args, f"paths.cache_dir={tmp_path / 'ref'}", "data.num_proc=2"])
                     .preprocessing_info["store"])
    assert len(list(reference.glob("train-*.npy"))) > 50
    cache = tmp_path / "cache"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "lmexp.tools.prepare", *args, f"paths.cache_dir={cache}"]
    killed = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    partial = cache / "preprocessed" / f"{reference.name}.partial"
    deadline = time.time() + 240
    while len(list(partial.glob("*.npy"))) < 5 and killed.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "the build ended before it could be killed"
    finished = {path.name: path.stat().st_ino for path in partial.glob("*.npy")}
    assert finished and not (partial / "index.json").exists()
    assert not (cache / "preprocessed" / reference.name).exists()  # a half-built store is no cache hit

    # The same command again (in this process, to spare a second start-up of Lightning).
    store = Path(prepare([*args, f"paths.cache_dir={cache}"]).preprocessing_info["store"])
    assert store == cache / "preprocessed" / reference.name
    assert {name: (store / name).stat().st_ino for name in finished} == finished  # kept, not rebuilt
    files = sorted(str(p.relative_to(reference)) for p in reference.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file())
    for name in files:
        assert (reference / name).read_bytes() == (store / name).read_bytes(), name


def test_a_full_disk_while_writing_a_shard_is_one_line_naming_the_cache(tmp_path, small_corpus, monkeypatch):
    from lmexp.errors import CannotWrite

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("lmexp.data.token_store.np.save", disk_full)
    source = TextFiles(train_files=f"{small_corpus}/*.txt")
    with pytest.raises(CannotWrite) as err:
        LMDataModule(source, BYTE, block_size=8, batch_size=2, cache_dir=str(tmp_path / "cache")).prepare()
    message = str(err.value)
    assert "\n" not in message and message.startswith("cannot write token shard train-000000.npy to ")
    assert str(tmp_path / "cache" / "preprocessed") in message and "the disk is full" in message
    assert not list((tmp_path / "cache").rglob("*.npy*"))  # nothing half-written left behind


def test_refused_writes_while_preparing_are_not_called_reads(tmp_path):
    from lmexp.build import data_failure
    from lmexp.errors import CannotWrite

    full = data_failure(str(tmp_path), OSError("Not enough free space on the disk (datasets)"))
    assert isinstance(full, CannotWrite) and f"to {tmp_path}: the disk is full" in str(full)
    forbidden = data_failure(str(tmp_path), PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x")))
    assert isinstance(forbidden, CannotWrite)
    unreadable = data_failure(str(tmp_path / "cache"), PermissionError(errno.EACCES, "Permission denied", "/data/a.txt"))
    assert str(unreadable).startswith("data: cannot read the data (PermissionError")


def test_streamed_hub_data_is_carved_deterministically_and_never_prepared_whole(tmp_path):
    (tmp_path / "data.jsonl").write_text("\n".join(f'{{"body": "document number {i}"}}' for i in range(300)))

    def source() -> HubDataset:
        return HubDataset("json", data_files={"train": str(tmp_path / "data.jsonl")}, text_column="body",
                          streaming=True, cache_dir=str(tmp_path / "hf"))

    corpus = source().load()
    parts = split_texts(corpus)
    assert set(parts) == {"train", "validation", "test"}
    assert sorted(sum(parts.values(), [])) == sorted(f"document number {i}" for i in range(300))
    assert parts == split_texts(source().load()) and corpus.fingerprint == source().load().fingerprint
    dm = LMDataModule(source(), BYTE, block_size=8, batch_size=2, cache_dir=str(tmp_path / "cache"))
    dm.prepare()
    assert dm.preprocessing_info["tokens"]["train"] == sum(len(t) + 1 for t in parts["train"])
    assert not list((tmp_path / "hf").rglob("*.arrow"))  # streamed: no prepared copy of the set
    with pytest.raises(ConfigError, match="data.text_column=missing"):
        list(HubDataset("json", data_files=str(tmp_path / "data.jsonl"), text_column="missing", streaming=True,
                        cache_dir=str(tmp_path / "hf")).load().pieces())


def test_tokenizer_trains_on_a_bounded_sample_and_the_record_says_how_much(tmp_path, small_corpus):
    bpe = {"_target_": "lmexp.data.tokenizers.build_tokenizer", "kind": "bpe", "vocab_size": 300, "min_frequency": 2}
    source = TextFiles(train_files=f"{small_corpus}/*.txt")
    train_bytes = sum(len(text.encode()) for text in split_texts(source.load())["train"])
    whole = LMDataModule(source, {**bpe, "train_bytes": 10**9}, block_size=8, batch_size=2, cache_dir=str(tmp_path))
    whole.prepare()
    assert whole.preprocessing_info["tokenizer_text_bytes"] == train_bytes  # a small corpus: all of it
    sampled = LMDataModule(source, {**bpe, "train_bytes": 20_000}, block_size=8, batch_size=2, cache_dir=str(tmp_path))
    sampled.prepare()
    seen = sampled.preprocessing_info["tokenizer_text_bytes"]
    assert abs(seen - 20_000) <= 4_000  # within one document (4 kB each) of the budget
    assert sampled.tokenizer.get_vocab() != whole.tokenizer.get_vocab()
