"""A data source that generates its corpus: short stories from a small grammar, the same for the
same arguments on every machine (no files, no download).

What lmexp needs of a data source (lmexp/data/sources.py): built by Hydra from `data.source`,
`load()` returns a `Corpus` — `splits` (a datasets.DatasetDict with a "text" column: train, and
validation/test if it has them) and a `fingerprint` string that changes whenever the text does
(it keys lmexp's preprocessing cache and goes into the run record).
"""

from __future__ import annotations

import hashlib
import random

from datasets import Dataset, DatasetDict

from lmexp.data.sources import SplitSpec, as_split_spec, split_documents, Corpus

NAMES = ["Ada", "Bo", "Cyd", "Dee", "Eli", "Fay"]
ADJECTIVES = ["red", "small", "quiet", "old", "bright", "heavy"]
NOUNS = ["cat", "boat", "lamp", "tree", "bell", "stone"]
VERBS = ["found", "painted", "lost", "carried", "kept", "dropped"]
PLACES = ["by the river", "in the hall", "at the market", "under the bridge", "near the mill"]


class SyntheticStories:
    """`num_documents` stories of `sentences` sentences each, drawn with `seed`; validation and
    test are carved out of them by lmexp's own `split_documents` (data.split)."""

    def __init__(self, num_documents: int = 200, sentences: int = 8, seed: int = 0,
                 split: SplitSpec | dict | None = None) -> None:
        if num_documents < 3 or sentences < 1:
            raise ValueError(f"num_documents must be >= 3 and sentences >= 1, got {num_documents} and {sentences}")
        self.num_documents, self.sentences, self.seed = num_documents, sentences, seed
        self.split = as_split_spec(split)

    def documents(self) -> list[str]:
        rng = random.Random(self.seed)
        stories = []
        for _ in range(self.num_documents):
            hero = rng.choice(NAMES)
            lines = []
            for _ in range(self.sentences):
                adjective, noun = rng.choice(ADJECTIVES), rng.choice(NOUNS)
                lines.append(f"{hero} {rng.choice(VERBS)} the {adjective} {noun} {rng.choice(PLACES)}.")
            stories.append(" ".join(lines))
        return stories

    def load(self) -> Corpus:
        docs = self.documents()
        parts = split_documents(docs, self.split)
        content = hashlib.sha256("\n\0".join(docs).encode() + repr(self.split).encode())
        fingerprint = content.hexdigest()[:16]
        splits = DatasetDict({name: Dataset.from_dict({"text": texts}) for name, texts in parts.items()})
        return Corpus(splits=splits, fingerprint=fingerprint)
