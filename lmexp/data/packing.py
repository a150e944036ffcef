"""Turn tokenized documents into fixed-length training blocks."""

from __future__ import annotations

import numpy as np
import torch


def pack_into_blocks(token_stream: np.ndarray, block_size: int) -> np.ndarray:
    """Cut one long token stream into rows of `block_size`, dropping the ragged tail.

    Documents are concatenated (each ended by EOS) before this, as in Hugging Face's
    `group_texts`: no padding, every position is a real prediction target.
    """
    n_blocks = len(token_stream) // block_size
    return token_stream[: n_blocks * block_size].reshape(n_blocks, block_size)


def smallest_dtype(vocab_size: int) -> np.dtype:
    """uint16 halves memory and cache size for vocabularies below 65536."""
    return np.dtype(np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32)


class TokenBlocks(torch.utils.data.Dataset):
    """Rows of a [N, block_size] array, fetched a whole batch at a time.

    `__getitems__` lets the DataLoader take a batch with one fancy index instead of
    B single-row lookups, which matters for small, fast models.
    """

    def __init__(self, blocks: np.ndarray) -> None:
        self.blocks = blocks

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.blocks[index].astype(np.int64))

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        return torch.from_numpy(self.blocks[np.asarray(indices)].astype(np.int64))


class TokenWindows(torch.utils.data.Dataset):
    """Windows of `window` tokens starting at any offset of one token stream (nanoGPT's sampling):
    the index is the start offset, drawn by ResumableRandomSampler(population=...)."""

    def __init__(self, stream: np.ndarray, window: int) -> None:
        self.stream, self.window = stream, window
        self.starts = np.arange(window)

    def __len__(self) -> int:
        return len(self.stream) - self.window + 1

    def __getitem__(self, offset: int) -> torch.Tensor:
        return torch.from_numpy(self.stream[offset: offset + self.window].astype(np.int64))

    def __getitems__(self, offsets: list[int]) -> torch.Tensor:
        return torch.from_numpy(self.stream[np.asarray(offsets)[:, None] + self.starts].astype(np.int64))


class ResumableRandomSampler(torch.utils.data.Sampler[int]):
    """A seeded random order per epoch that can start part-way through an epoch.

    The order depends only on (seed, epoch), never on the global RNG, so a run resumed from a
    mid-epoch checkpoint continues with exactly the samples an uninterrupted run would see next.
    Lightning calls `set_epoch`; the data module sets `skip` from the checkpoint.
    """

    def __init__(self, num_samples: int, seed: int, population: int | None = None) -> None:
        # population: draw num_samples indices from range(population) with replacement (random
        # windows) instead of a permutation of range(num_samples).
        self.num_samples = num_samples
        self.population = population
        self.seed = seed
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.population is None:
            order = torch.randperm(self.num_samples, generator=generator).tolist()
        else:
            order = torch.randint(self.population, (self.num_samples,), generator=generator).tolist()
        start, self.skip = self.skip, 0  # skipping applies to the first epoch after a resume only
        return iter(order[start:])

    def __len__(self) -> int:
        # The full epoch: Lightning sizes every epoch from this, and ends the shortened first
        # epoch after a resume by its own restored batch count.
        return self.num_samples
