import os

# Set before transformers/huggingface_hub read it: these tests must never reach the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import random

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from lmexp.data.tokenizers import SPECIAL_TOKENS, build_tokenizer
from lmexp.errors import ConfigError

TRAINED_KINDS = ["char", "bpe", "wordpiece"]
LOCAL_KINDS = ["byte", *TRAINED_KINDS]
EXPECTED_IDS = {"pad": 0, "unk": 1, "eos": 2, "bos": 2, "mask": 3, "cls": 4, "sep": 5}
# Unicode, tabs, newlines, repeated spaces and an emoji: everything a lossless tokenizer must keep.
TRICKY_TEXT = "déf f(x):\n\treturn  x ** 2  # ünïcode 🙂 中文\r\n"


def make_corpus(n_docs: int = 300, seed: int = 0) -> list[str]:
    """Python-flavoured made-up documents; big enough for a few hundred merges."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "po", "si", "de", "fu", "gra", "vex", "zor", "qui"]
    words = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(400)]
    docs = []
    for _ in range(n_docs):
        lines = []
        for _ in range(rng.randint(3, 10)):
            line = " ".join(rng.choices(words, k=rng.randint(2, 8)))
            lines.append("\t" * rng.randint(0, 2) + line + rng.choice(["", ".", ",", "!", "()", " = 1"]))
        docs.append("\n".join(lines) + "\n")
    return docs


CORPUS = make_corpus()


def build(kind: str, **kwargs) -> PreTrainedTokenizerFast:
    defaults = {"texts": CORPUS, "vocab_size": 500} if kind in ("bpe", "wordpiece") else {"texts": CORPUS}
    return build_tokenizer(kind, **{**defaults, **kwargs})


def encode(tokenizer: PreTrainedTokenizerFast, text: str) -> list[int]:
    return tokenizer([text], add_special_tokens=False)["input_ids"][0]


@pytest.mark.parametrize("kind", LOCAL_KINDS)
def test_special_token_ids(kind):
    tokenizer = build(kind)
    for name, expected in EXPECTED_IDS.items():
        assert getattr(tokenizer, f"{name}_token_id") == expected, name
    assert sorted(tokenizer.all_special_ids) == list(range(len(SPECIAL_TOKENS)))
    assert tokenizer.convert_ids_to_tokens(list(range(len(SPECIAL_TOKENS)))) == SPECIAL_TOKENS


@pytest.mark.parametrize("kind", LOCAL_KINDS)
def test_no_special_tokens_added_automatically(kind):
    tokenizer = build(kind)
    text = CORPUS[0]
    assert tokenizer(text)["input_ids"] == encode(tokenizer, text)


def test_byte_vocab_and_lossless_round_trip():
    tokenizer = build_tokenizer("byte", texts=["ignored"])
    assert len(tokenizer) == 262
    ids = encode(tokenizer, TRICKY_TEXT)
    assert len(ids) == len(TRICKY_TEXT.encode("utf-8"))
    assert tokenizer.decode(ids) == TRICKY_TEXT


def test_bpe_lossless_round_trip_and_compression():
    tokenizer = build("bpe")
    for text in [TRICKY_TEXT, CORPUS[0], CORPUS[-1]]:
        assert tokenizer.decode(encode(tokenizer, text)) == text
    assert len(encode(tokenizer, CORPUS[0])) < len(CORPUS[0].encode("utf-8")) / 2


def test_char_vocab_round_trip_and_unknown():
    tokenizer = build("char")
    chars = sorted(set("".join(CORPUS)))
    assert len(tokenizer) == len(SPECIAL_TOKENS) + len(chars)
    assert tokenizer.convert_ids_to_tokens(list(range(len(SPECIAL_TOKENS), len(tokenizer)))) == chars
    for text in [CORPUS[0], "  \t\tka lo\n\n"]:
        ids = encode(tokenizer, text)
        assert len(ids) == len(text)
        assert tokenizer.decode(ids) == text
    k, a = tokenizer.convert_tokens_to_ids(["k", "a"])
    assert encode(tokenizer, "ka🙂") == [k, a, tokenizer.unk_token_id]


def test_char_accepts_a_one_pass_iterator():
    assert build_tokenizer("char", texts=iter(CORPUS)).get_vocab() == build("char").get_vocab()


def test_wordpiece_round_trips_the_normalized_text():
    tokenizer = build("wordpiece", lowercase=True)
    assert any(token.startswith("##") for token in tokenizer.get_vocab())
    text = "Kalo Mine, ruta posi. Defu!"
    normalized = tokenizer.backend_tokenizer.normalizer.normalize_str(text)
    assert normalized == "kalo mine, ruta posi. defu!"
    ids = encode(tokenizer, text)
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == normalized


@pytest.mark.parametrize("kind", ["bpe", "wordpiece"])
def test_trained_vocab_size(kind):
    tokenizer = build(kind, vocab_size=500)
    assert 256 < len(tokenizer) <= 500


@pytest.mark.parametrize("kind", TRAINED_KINDS)
def test_training_is_deterministic(kind):
    first, second = build(kind), build(kind)
    assert first.get_vocab() == second.get_vocab()
    assert first.backend_tokenizer.to_str() == second.backend_tokenizer.to_str()


@pytest.mark.parametrize("kind", LOCAL_KINDS)
def test_save_and_reload(kind, tmp_path):
    tokenizer = build(kind)
    tokenizer.save_pretrained(tmp_path)
    text = CORPUS[1] + " ka lo."
    expected = encode(tokenizer, text)
    for loaded in [
        PreTrainedTokenizerFast.from_pretrained(tmp_path),
        AutoTokenizer.from_pretrained(tmp_path),
        build_tokenizer("pretrained", name_or_path=str(tmp_path)),
    ]:
        assert encode(loaded, text) == expected
        assert loaded.decode(expected) == tokenizer.decode(expected)
        assert len(loaded) == len(tokenizer)
        for name, expected_id in EXPECTED_IDS.items():
            assert getattr(loaded, f"{name}_token_id") == expected_id, name
        assert loaded(text)["input_ids"] == expected


def test_pretrained_without_pad_uses_eos(tmp_path):
    backend = build_tokenizer("byte").backend_tokenizer
    PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>").save_pretrained(tmp_path)
    tokenizer = build_tokenizer("pretrained", name_or_path=str(tmp_path))
    assert tokenizer.pad_token == "<eos>"
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == 2


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"kind": "sentencepiece"}, "tokenizer.kind"),
        ({"kind": "bpe", "vocab_size": 100}, "tokenizer.kind=bpe"),
        ({"kind": "wordpiece", "vocab_size": 100}, "tokenizer.kind=wordpiece"),
        ({"kind": "char"}, "tokenizer.kind=char"),
        ({"kind": "bpe", "texts": ["a b"]}, "tokenizer.vocab_size"),
        ({"kind": "wordpiece", "texts": ["a b"]}, "tokenizer.vocab_size"),
        ({"kind": "pretrained"}, "tokenizer.name_or_path"),
    ],
)
def test_config_errors_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key) as error:
        build_tokenizer(**kwargs)
    assert "\n" not in str(error.value)


def test_unknown_kind_lists_valid_kinds():
    with pytest.raises(ValueError, match="byte, char, bpe, wordpiece, pretrained"):
        build_tokenizer("sentencepiece")


def test_missing_pretrained_path_names_it(tmp_path):
    missing = str(tmp_path / "no_such_tokenizer")
    with pytest.raises(ConfigError, match="tokenizer.name_or_path") as error:
        build_tokenizer("pretrained", name_or_path=missing)
    assert missing in str(error.value)
    assert "\n" not in str(error.value)


def test_train_bytes_bounds_the_text_a_tokenizer_reads():
    from lmexp.data.tokenizers import TextBudget

    budget = TextBudget(iter(["ab", "cd", "ef", "gh"]), train_bytes=3)
    assert list(budget) == ["ab", "cd"] and budget.bytes_seen == 4
    small = build("bpe", texts=CORPUS[:50], train_bytes=10)  # reads the first document only
    assert small.get_vocab() == build("bpe", texts=CORPUS[:1]).get_vocab()
