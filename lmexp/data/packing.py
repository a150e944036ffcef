"""Training rows read from a token stream: packed blocks or random windows, and their seeded,
resumable order."""

from __future__ import annotations

import numpy as np
import torch

from lmexp.data.token_store import TokenStream


def smallest_dtype(vocab_size: int) -> np.dtype:
    """uint16 halves memory and cache size for vocabularies below 65536."""
    return np.dtype(np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32)


class TokenBlocks(torch.utils.data.Dataset):
    """Consecutive blocks of `block_size` tokens of a token stream, the ragged tail dropped.

    Documents are concatenated (each ended by EOS) in the stream, as in Hugging Face's
    `group_texts`: no padding, every position is a real prediction target. `__getitems__` lets
    the DataLoader take a batch with one read instead of B single-row lookups, which matters for
    small, fast models.
    """

    def __init__(self, stream: TokenStream, block_size: int) -> None:
        self.stream, self.block_size = stream, block_size

    def __len__(self) -> int:
        return len(self.stream) // self.block_size

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        return torch.from_numpy(self.stream.windows(np.asarray(indices) * self.block_size, self.block_size))


class TokenWindows(torch.utils.data.Dataset):
    """Windows of `window` tokens starting at any offset of the first `tokens` tokens of a stream
    (nanoGPT's sampling): the index is the start offset, drawn by ResumableRandomSampler(population=...)."""

    def __init__(self, stream: TokenStream, window: int, tokens: int) -> None:
        self.stream, self.window, self.tokens = stream, window, tokens

    def __len__(self) -> int:
        return self.tokens - self.window + 1

    def __getitem__(self, offset: int) -> torch.Tensor:
        return self.__getitems__([offset])[0]

    def __getitems__(self, offsets: list[int]) -> torch.Tensor:
        return torch.from_numpy(self.stream.windows(np.asarray(offsets), self.window))


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
