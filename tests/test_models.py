"""Model contract tests: shapes, attention direction, padding, ties, trainability, HF round trips."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
import torch.nn.functional as F

from lmexp.models.hf import HFModel
from lmexp.models.bag_of_ngrams import BagOfNgrams, ngram_buckets
from lmexp.models.classifier import Classifier
from lmexp.models.transformer import SeedEncoder, Transformer

VOCAB, MAX_LEN, B, T = 50, 16, 2, 10

HF_TINY = {
    "gpt2": dict(n_layer=2, n_embd=32, n_head=2),
    "bert": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
    "llama": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64),
}
HF_ATTENTION = {"gpt2": "causal", "bert": "bidirectional", "llama": "causal"}


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    # Models this tiny run faster on one thread; several contend badly on a busy CI machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(kind: str, attention: str):
    """A tiny model of one kind, in eval mode so outputs are deterministic."""
    torch.manual_seed(0)
    if kind in ("learned", "rotary"):
        model = Transformer(VOCAB, MAX_LEN, attention, d_model=32, n_layers=2, n_heads=4, positions=kind)
    elif kind == "post_ln":
        model = Transformer(VOCAB, MAX_LEN, attention, d_model=32, n_layers=2, n_heads=4, norm_position="post")
    elif kind == "ngrams":
        model = BagOfNgrams(VOCAB, MAX_LEN, attention, d_model=32, ngrams=3, buckets=101)
    elif kind == "seed":
        model = SeedEncoder(VOCAB, MAX_LEN, attention, d_model=32, n_heads=4, n_layers=2, dropout=0.0)
    else:
        model = HFModel(kind, VOCAB, MAX_LEN, attention, **HF_TINY[kind])
    return model.eval()


CASES = [(kind, attention) for kind in ("learned", "rotary", "post_ln", "seed")
         for attention in ("causal", "bidirectional")]
CASES += list(HF_ATTENTION.items()) + [("ngrams", "causal")]
IDS = [f"{kind}-{attention}" for kind, attention in CASES]


def random_ids(seed: int = 1) -> torch.Tensor:
    return torch.randint(VOCAB, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind,attention", CASES, ids=IDS)
def test_contract_shapes(kind, attention):
    model = build(kind, attention)
    ids = random_ids()
    assert (model.vocab_size, model.max_seq_len, model.attention) == (VOCAB, MAX_LEN, attention)
    assert model(ids).shape == (B, T, VOCAB)
    assert model.encode(ids, torch.ones(B, T)).shape == (B, T, model.hidden_size)


@pytest.mark.parametrize("kind,attention", CASES, ids=IDS)
def test_future_tokens_matter_only_when_bidirectional(kind, attention):
    model = build(kind, attention)
    ids, t = random_ids(), 4
    changed = ids.clone()
    changed[:, t + 1 :] = (changed[:, t + 1 :] + 1) % VOCAB
    with torch.no_grad():
        before, after = model(ids), model(changed)
    same_past = torch.allclose(before[:, : t + 1], after[:, : t + 1], atol=1e-5)
    assert same_past == (attention == "causal")


@pytest.mark.parametrize("kind,attention", CASES, ids=IDS)
def test_padded_tokens_do_not_affect_real_positions(kind, attention):
    model = build(kind, attention)
    ids = random_ids()
    # Left padding in row 0 (so it precedes real tokens, the hard case for causal models), right in row 1.
    mask = torch.ones(B, T, dtype=torch.long)
    mask[0, :3] = 0
    mask[1, -2:] = 0
    changed = torch.where(mask.bool(), ids, (ids + 7) % VOCAB)
    with torch.no_grad():
        before, after = model(ids, mask), model(changed, mask)
        unmasked = model(changed)
    real = mask.bool()
    assert torch.isfinite(before[real]).all()
    assert torch.allclose(before[real], after[real], atol=1e-5)
    # Without the mask the padding is visible, so the check above is not vacuous.
    assert not torch.allclose(before[real], unmasked[real], atol=1e-5)


@pytest.mark.parametrize("kind,attention", CASES, ids=IDS)
def test_adamw_steps_reduce_loss(kind, attention):
    model = build(kind, attention).train()
    ids, targets = random_ids(1), random_ids(2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(model(ids).flatten(0, 1), targets.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1


@pytest.mark.parametrize("kind,attention", CASES, ids=IDS)
def test_too_long_sequence_raises(kind, attention):
    model = build(kind, attention)
    ids = torch.zeros(1, MAX_LEN + 1, dtype=torch.long)
    with pytest.raises(ValueError, match=f"sequence length {MAX_LEN + 1} exceeds model.max_seq_len={MAX_LEN}"):
        model(ids)
    with pytest.raises(ValueError, match="exceeds model.max_seq_len"):
        model.encode(ids)


def test_tied_embeddings_share_storage():
    tied = Transformer(VOCAB, MAX_LEN, d_model=32, n_layers=1, n_heads=4)
    untied = Transformer(VOCAB, MAX_LEN, d_model=32, n_layers=1, n_heads=4, tie_embeddings=False)
    assert tied.lm_head.weight.data_ptr() == tied.tok_emb.weight.data_ptr()
    assert untied.lm_head.weight.data_ptr() != untied.tok_emb.weight.data_ptr()
    assert untied.num_parameters() - tied.num_parameters() == VOCAB * 32


def test_gpt2_124m_parameter_count():
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = Transformer(50257, 1024, d_model=768, n_layers=12, n_heads=12)
    assert model.num_parameters() == 124_439_808


def test_grokking_shape_has_no_layernorm_or_bias():
    model = Transformer(VOCAB, MAX_LEN, n_layers=1, activation="relu", norm=False, bias=False)
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in model.modules())
    assert not any(name.endswith("bias") for name, _ in model.named_parameters())
    assert any(isinstance(m, torch.nn.ReLU) for m in model.modules())


def test_post_ln_normalises_after_each_residual_addition():
    torch.manual_seed(0)
    post = Transformer(VOCAB, MAX_LEN, d_model=32, n_layers=2, n_heads=4, norm_position="post", bias=False).eval()
    pre = Transformer(VOCAB, MAX_LEN, d_model=32, n_layers=2, n_heads=4, bias=False).eval()
    assert isinstance(post.ln_f, torch.nn.Identity) and isinstance(pre.ln_f, torch.nn.LayerNorm)
    assert post.num_parameters() == pre.num_parameters() - 32  # no final LayerNorm
    states = post.encode(random_ids())
    # The last block ends with a LayerNorm (weight 1 at init): every position has mean 0 and std 1;
    # a pre-LN block ends with a residual addition, which is not normalised.
    assert states.mean(-1).abs().max() < 1e-5 and (states.std(-1, unbiased=False) - 1).abs().max() < 1e-3
    unnormalised = pre.blocks[-1](pre.tok_emb(random_ids()), None, True, None)
    assert (unnormalised.std(-1, unbiased=False) - 1).abs().min() > 0.5


def test_residual_projections_use_scaled_init():
    torch.manual_seed(0)
    model = Transformer(1000, MAX_LEN, d_model=256, n_layers=8, n_heads=4)
    assert model.tok_emb.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.blocks[0].mlp.proj.weight.std().item() == pytest.approx(0.02 / 4, rel=0.05)
    assert model.blocks[0].attn.qkv.bias.abs().max().item() == 0.0


def test_fan_in_init_matches_the_grokking_paper():
    torch.manual_seed(0)
    model = Transformer(1000, MAX_LEN, d_model=256, n_layers=8, n_heads=4, d_ff=1024, init="fan_in", tie_embeddings=False)
    assert model.tok_emb.weight.std().item() == pytest.approx(256 ** -0.5, rel=0.05)
    assert model.blocks[0].mlp.fc.weight.std().item() == pytest.approx(256 ** -0.5, rel=0.05)
    assert model.blocks[0].mlp.proj.weight.std().item() == pytest.approx(1024 ** -0.5, rel=0.05)
    assert model.lm_head.weight.std().item() == pytest.approx(256 ** -0.5, rel=0.05)
    assert model.blocks[0].attn.qkv.bias.abs().max().item() == 0.0


def test_ngram_buckets_hash_equal_ngrams_equally_and_skip_padding():
    ids = torch.tensor([[5, 6, 7, 5, 6, 7, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0]])
    bigrams = ngram_buckets(ids, 2, 1000, mask)[0].tolist()
    assert bigrams[0] == -1 and bigrams[-1] == -1  # no bigram before the first token or into padding
    assert bigrams[1] == bigrams[4] and bigrams[2] == bigrams[5] and bigrams[1] != bigrams[2]
    assert all(0 <= b < 1000 for b in bigrams[1:-1])
    trigrams = ngram_buckets(ids, 3, 1000)[0].tolist()
    assert trigrams[:2] == [-1, -1] and trigrams[2] == trigrams[5] != trigrams[3]


def test_bag_of_ngrams_sees_the_previous_token_only_with_bigrams():
    ids = random_ids()
    changed = ids.clone()
    changed[:, 3] = (changed[:, 3] + 1) % VOCAB
    for ngrams, affected in ((1, False), (2, True)):
        torch.manual_seed(0)
        model = BagOfNgrams(VOCAB, MAX_LEN, d_model=16, ngrams=ngrams, buckets=64).eval()
        with torch.no_grad():
            moved = not torch.allclose(model.encode(ids)[:, 4], model.encode(changed)[:, 4])
        assert moved == affected
    with pytest.raises(ValueError, match="attention must be causal"):
        BagOfNgrams(VOCAB, MAX_LEN, attention="bidirectional")


def test_classifier_pools_a_bag_by_its_mean_and_a_decoder_by_its_last_token():
    assert Classifier(BagOfNgrams(VOCAB, MAX_LEN), num_classes=3).pooling == "mean"
    assert Classifier(Transformer(VOCAB, MAX_LEN, d_model=32, n_layers=1, n_heads=4), num_classes=3).pooling == "last"


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(d_model=30, n_heads=4), "d_model=30 must be divisible by n_heads=4"),
        (dict(positions="alibi"), "unknown positions='alibi'; valid values: learned, rotary"),
        (dict(attention="prefix"), "unknown attention='prefix'; valid values: causal, bidirectional"),
        (dict(activation="swish"), "unknown activation='swish'; valid values: gelu, relu"),
        (dict(init="xavier"), "unknown init='xavier'; valid values: gpt2, fan_in"),
        (dict(norm_position="sandwich"), "unknown norm_position='sandwich'; valid values: pre, post"),
    ],
)
def test_transformer_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Transformer(VOCAB, MAX_LEN, **kwargs)


@pytest.mark.parametrize("model_type", HF_TINY)
def test_hf_pretrained_round_trip(model_type, tmp_path):
    model = build(model_type, HF_ATTENTION[model_type])
    model.hf_model.save_pretrained(tmp_path)
    loaded = HFModel(model_type, VOCAB, MAX_LEN, HF_ATTENTION[model_type], pretrained=str(tmp_path)).eval()
    ids = random_ids()
    with torch.no_grad():
        assert torch.equal(model(ids), loaded(ids))


def test_hf_pretrained_checks_vocab_and_positions(tmp_path):
    build("gpt2", "causal").hf_model.save_pretrained(tmp_path)
    smaller = HFModel("gpt2", VOCAB - 10, MAX_LEN, "causal", pretrained=str(tmp_path))
    assert smaller(random_ids() % (VOCAB - 10)).shape == (B, T, VOCAB - 10)
    with pytest.raises(ValueError, match=f"vocab_size={VOCAB + 1} exceeds the embedding size {VOCAB}"):
        HFModel("gpt2", VOCAB + 1, MAX_LEN, "causal", pretrained=str(tmp_path))
    with pytest.raises(ValueError, match=f"max_seq_len={MAX_LEN * 2} exceeds the max positions {MAX_LEN}"):
        HFModel("gpt2", VOCAB, MAX_LEN * 2, "causal", pretrained=str(tmp_path))


@pytest.mark.parametrize(
    "model_type,attention,message",
    [
        ("bert", "causal", "model_type=bert is a bidirectional encoder and cannot be used with attention=causal"),
        ("gpt2", "bidirectional", "model_type=gpt2 is a causal decoder and cannot be used with attention=bidirectional"),
        ("t5", "causal", "unknown model_type='t5'; valid values: gpt2, bert, llama"),
    ],
)
def test_hf_rejects_unsupported_model_and_attention(model_type, attention, message):
    with pytest.raises(ValueError, match=message):
        HFModel(model_type, VOCAB, MAX_LEN, attention)


def test_hf_rejects_unknown_and_reserved_config_keys():
    with pytest.raises(ValueError, match="unknown GPT2Config keys: n_layers"):
        HFModel("gpt2", VOCAB, MAX_LEN, "causal", n_layers=2)
    with pytest.raises(ValueError, match="set max_seq_len instead of max_position_embeddings"):
        HFModel("bert", VOCAB, MAX_LEN, "bidirectional", max_position_embeddings=32)
