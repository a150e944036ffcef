"""Sources, splits, packing and the preprocessing cache of lmexp/data/."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmexp.data import datamodule as datamodule_module
from lmexp.data.datamodule import LMDataModule
from lmexp.data.packing import TokenBlocks, pack_into_blocks
from lmexp.data.sources import HubDataset, PythonStdlib, SplitSpec, TextFiles, python_stdlib_files, split_documents
from lmexp.errors import ConfigError

BYTE = {"_target_": "lmexp.data.tokenizers.build_tokenizer", "kind": "byte"}


def test_stdlib_corpus_is_real_python_without_tests_or_site_packages():
    files = python_stdlib_files()
    assert len(files) > 300
    assert not any("site-packages" in f or "/test/" in f for f in files)
    assert any(f.endswith("/json/decoder.py") for f in files)


def test_stdlib_split_is_deterministic_and_disjoint():
    first = PythonStdlib(max_files=60).load()
    second = PythonStdlib(max_files=60).load()
    assert first.fingerprint == second.fingerprint
    texts = {name: set(split["text"]) for name, split in first.splits.items()}
    assert texts["train"].isdisjoint(texts["validation"]) and texts["train"].isdisjoint(texts["test"])
    non_empty = sum(1 for f in python_stdlib_files()[:60] if open(f, encoding="utf-8", errors="replace").read().strip())
    assert sum(len(split) for split in first.splits.values()) == non_empty  # each file in exactly one split
    assert list(first.splits["train"]["text"]) == list(second.splits["train"]["text"])
    other_seed = PythonStdlib(max_files=60, split={"seed": 1}).load()
    assert set(other_seed.splits["validation"]["text"]) != texts["validation"]


def test_text_files_by_line_and_given_splits(tmp_path):
    (tmp_path / "train.txt").write_text("alpha\n\nbeta\ngamma\n")
    (tmp_path / "valid.txt").write_text("delta\n")
    corpus = TextFiles(train_files=str(tmp_path / "train.txt"), val_files=str(tmp_path / "valid.txt"),
                       document="line", split={"test_fraction": 0.0, "val_fraction": 0.0}).load()
    assert list(corpus.splits["train"]["text"]) == ["alpha", "beta", "gamma"]
    assert list(corpus.splits["validation"]["text"]) == ["delta"]
    assert "test" not in corpus.splits
    # The fingerprint follows the content.
    (tmp_path / "train.txt").write_text("alpha\nbeta\ngamma\nomega\n")
    changed = TextFiles(train_files=str(tmp_path / "train.txt"), val_files=str(tmp_path / "valid.txt"),
                        document="line", split={"test_fraction": 0.0, "val_fraction": 0.0}).load()
    assert changed.fingerprint != corpus.fingerprint


def test_position_split_is_contiguous_like_nanogpt():
    parts = split_documents(["abcdefghij" * 10], SplitSpec(val_fraction=0.1, test_fraction=0.1, by="position"))
    text = "abcdefghij" * 10
    assert parts["train"][0] + parts["validation"][0] + parts["test"][0] == text
    assert len(parts["train"][0]) == 80 and len(parts["validation"][0]) == 10


def test_too_few_documents_to_split_says_what_to_do():
    with pytest.raises(ConfigError, match="split.by=position"):
        split_documents(["one document"], SplitSpec())


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


def test_pack_into_blocks_drops_only_the_tail():
    stream = np.arange(10)
    blocks = pack_into_blocks(stream, 3)
    assert blocks.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_token_blocks_fetch_whole_batches():
    data = TokenBlocks(np.arange(12, dtype=np.uint16).reshape(4, 3))
    batch = data.__getitems__([3, 0])
    assert batch.dtype == torch.int64 and batch.tolist() == [[9, 10, 11], [0, 1, 2]]


def test_datamodule_packs_documents_with_eos_and_caches(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("hello world " * 20)
    (tmp_path / "b.txt").write_text("second file " * 20)
    source = TextFiles(train_files=str(tmp_path / "*.txt"), split={"val_fraction": 0.5, "test_fraction": 0.0})
    dm = LMDataModule(source, BYTE, block_size=9, batch_size=2, cache_dir=str(tmp_path / "cache"))
    dm.prepare()
    assert not dm.cache_hit
    eos = dm.tokenizer.eos_token_id
    stream = np.concatenate([np.asarray(dm.blocks[s]).ravel() for s in ("train",)])
    assert (stream == eos).sum() <= 1 and dm.blocks["train"].shape[1] == 9
    decoded = dm.tokenizer.decode(np.asarray(dm.blocks["train"][0]).tolist())
    assert decoded in ("hello world " * 20 + "second file " * 20)

    # A second identical datamodule trains no tokenizer and tokenizes nothing.
    monkeypatch.setattr(datamodule_module, "tokenize_and_pack", lambda *a, **k: pytest.fail("re-tokenized"))
    again = LMDataModule(source, BYTE, block_size=9, batch_size=2, cache_dir=str(tmp_path / "cache"))
    again.prepare()
    assert again.cache_hit
    assert np.array_equal(np.asarray(again.blocks["train"]), np.asarray(dm.blocks["train"]))


def test_split_smaller_than_one_block_is_a_config_error(tmp_path):
    (tmp_path / "a.txt").write_text("tiny")
    source = TextFiles(train_files=str(tmp_path / "a.txt"), split={"val_fraction": 0.0, "test_fraction": 0.0})
    with pytest.raises(ConfigError, match="data.block_size=64"):
        LMDataModule(source, BYTE, block_size=64, batch_size=2).prepare()


def test_random_windows_start_anywhere_and_are_seeded():
    from lmexp.data.packing import ResumableRandomSampler, TokenWindows

    stream = np.arange(100)
    windows = TokenWindows(stream, 5)
    assert len(windows) == 96 and windows.__getitems__([0, 95]).tolist() == [[0, 1, 2, 3, 4], [95, 96, 97, 98, 99]]
    sampler = ResumableRandomSampler(20, seed=3, population=len(windows))
    first = list(sampler)
    assert len(first) == 20 and max(first) < 96 and len(set(o % 5 for o in first)) > 1  # not block-aligned
    sampler.skip = 7
    assert list(sampler) == first[7:]
    sampler.set_epoch(1)
    assert list(sampler) != first
