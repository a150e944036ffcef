"""Tokenizer construction for lmexp experiments.

Every kind is returned as a `transformers.PreTrainedTokenizerFast`, so runs can be
saved with `save_pretrained` and reloaded with `AutoTokenizer.from_pretrained`.
No post-processor adds special tokens: callers encode with
`add_special_tokens=False` and insert the ids they need themselves.
"""

import string
import unicodedata
from collections.abc import Iterable, Iterator

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from lmexp.errors import ConfigError

KINDS = ("byte", "char", "bpe", "wordpiece", "pretrained")

# Fixed order so the ids are the same for every trained kind: <pad>=0, <unk>=1, ...
PAD, UNK, EOS, MASK, CLS, SEP = "<pad>", "<unk>", "<eos>", "<mask>", "<cls>", "<sep>"
SPECIAL_TOKENS = [PAD, UNK, EOS, MASK, CLS, SEP]

# Batches for train_from_iterator: lets the Rust side parallelise without one giant string.
TRAIN_BATCH_SIZE = 1000


def build_tokenizer(
    kind: str,
    texts: Iterable[str] | None = None,
    vocab_size: int | None = None,
    min_frequency: int = 2,
    lowercase: bool = False,
    name_or_path: str | None = None,
    train_bytes: int | None = None,
) -> PreTrainedTokenizerFast:
    """Build (and, for bpe/wordpiece/char, train on `texts`) a tokenizer of the given kind.

    `train_bytes`: train on at most this much of `texts` (UTF-8 bytes; None: all of it). The
    caller passes a seeded sample of a corpus bigger than that (lmexp.data.datamodule)."""
    if kind not in KINDS:
        raise ValueError(f"tokenizer.kind={kind!r} is unknown; valid kinds: {', '.join(KINDS)}")
    if kind == "pretrained":
        return _pretrained(name_or_path)
    if kind == "byte":
        return _wrap(_byte_tokenizer())
    if texts is None:
        raise ValueError(f"texts (the training documents) must be given for tokenizer.kind={kind}")
    texts = TextBudget(texts, train_bytes)
    if kind == "char":
        return _wrap(_char_tokenizer(texts))
    if vocab_size is None:
        raise ValueError(f"tokenizer.vocab_size must be set for kind={kind}")
    if kind == "bpe":
        return _wrap(_bpe_tokenizer(texts, vocab_size, min_frequency))
    return _wrap(_wordpiece_tokenizer(texts, vocab_size, min_frequency, lowercase))


class TextBudget:
    """`texts` until `train_bytes` of them (UTF-8) have been read (None: all); `bytes_seen` says how much."""

    def __init__(self, texts: Iterable[str], train_bytes: int | None = None) -> None:
        self.texts, self.train_bytes, self.bytes_seen = texts, train_bytes, 0

    def __iter__(self) -> Iterator[str]:
        for text in self.texts:
            yield text
            self.bytes_seen += len(text.encode("utf-8", "replace"))
            if self.train_bytes and self.bytes_seen >= self.train_bytes:
                return


def _byte_tokenizer() -> Tokenizer:
    # A BPE model without merges over the 256 byte-level symbols: every byte is its own token.
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    # The GPT-2 split regex only matters for merges; skipping it makes encoding ~1.5x faster.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _char_tokenizer(texts: Iterable[str]) -> Tokenizer:
    chars: set[str] = set()
    for text in texts:
        chars.update(text)
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + sorted(chars))}
    # A BPE model without merges and without a pre-tokenizer maps each character to its id
    # (unseen ones to <unk>); ~2.5x faster than one pre-token per character with WordLevel.
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    # Fuse joins the characters back without the spaces a bare decode would insert.
    tokenizer.decoder = decoders.Fuse()
    return tokenizer


def _bpe_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        # All 256 bytes stay in the vocab even if the corpus lacks some, so any text round-trips.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_batches(texts), trainer=trainer)
    return tokenizer


def _wordpiece_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int, lowercase: bool) -> Tokenizer:
    normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    texts = list(texts)  # read twice: for the continuation alphabet, then for training
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        # Workaround for huggingface/tokenizers#1794: the trainer numbers "##x" tokens in hash-map
        # order and those ids break ties between equally frequent merges, so the vocab changes from
        # run to run. Reserving them up front, sorted, makes training deterministic.
        special_tokens=SPECIAL_TOKENS + _continuation_alphabet(texts, normalizer),
        continuing_subword_prefix="##",
        show_progress=False,
    )
    scratch = _bert_pipeline(models.WordPiece(unk_token=UNK, continuing_subword_prefix="##"), normalizer)
    scratch.train_from_iterator(_batches(texts), trainer=trainer)
    # Rebuild from the vocab alone: training also registered the reserved "##x" as special added tokens.
    vocab = scratch.get_vocab(with_added_tokens=False)
    return _bert_pipeline(models.WordPiece(vocab, unk_token=UNK, continuing_subword_prefix="##"), normalizer)


def _continuation_alphabet(texts: list[str], normalizer: normalizers.Normalizer) -> list[str]:
    """Sorted "##x" tokens for every character that may continue a word after BERT normalization."""
    chars: set[str] = set()
    for text in texts:
        chars.update(normalizer.normalize_str(text))
    # BertPreTokenizer splits on whitespace and punctuation, so those never continue a word.
    splits = {c for c in chars if c.isspace() or c in string.punctuation or unicodedata.category(c).startswith("P")}
    return [f"##{c}" for c in sorted(chars - splits)]


def _bert_pipeline(model: models.Model, normalizer: normalizers.Normalizer) -> Tokenizer:
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


def _batches(texts: Iterable[str]) -> Iterator[list[str]]:
    batch = []
    for text in texts:
        batch.append(text)
        if len(batch) == TRAIN_BATCH_SIZE:
            yield batch
            batch = []
    if batch:
        yield batch


def _wrap(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD,
        unk_token=UNK,
        eos_token=EOS,
        # GPT-2 style: one <eos> separates documents, so it also serves as bos.
        bos_token=EOS,
        mask_token=MASK,
        cls_token=CLS,
        sep_token=SEP,
        # Cleanup would rewrite " ." to "." and so break exact round trips.
        clean_up_tokenization_spaces=False,
    )


def _pretrained(name_or_path: str | None) -> PreTrainedTokenizerFast:
    if name_or_path is None:
        raise ValueError("tokenizer.name_or_path must be set for kind=pretrained")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except OSError as error:
        # Missing local dirs and unreachable hub ids both surface as OSError; keep it one line.
        reason = str(error).strip().split("\n", 1)[0]
        raise ConfigError(
            f"tokenizer.name_or_path={name_or_path!r} is not a local directory and could not be loaded "
            f"from the hub: {reason}"
        ) from error
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise ValueError(f"tokenizer.name_or_path={name_or_path!r} is not a fast (tokenizers-backed) tokenizer")
    if tokenizer.pad_token is None:
        # Padding is only masked out, so any existing special token will do.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer
