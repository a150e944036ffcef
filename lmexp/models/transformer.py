"""Native transformers: a configurable GPT/BERT-style ``Transformer`` (pre-LN by default, post-LN as an
option) and the article's ``SeedEncoder``."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from lmexp.models import ATTENTION_TYPES, check_choice, check_seq_len, num_parameters

POSITIONS = ("learned", "rotary")
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}
INITS = ("gpt2", "fan_in")
NORM_POSITIONS = ("pre", "post")
Rope = tuple[torch.Tensor, torch.Tensor] | None  # (cos, sin) tables, or None without rotary positions
# While decoding: a layer's key and value caches [B, heads, positions, head_dim] and where in them this
# call's keys and values go (an index for scatter_ along the positions).
KeyValues = tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None


def _rotary_tables(max_seq_len: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [max_seq_len, head_dim] for RoPE in the rotate-half layout."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim)
    angles = torch.outer(torch.arange(max_seq_len).float(), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def _apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def _allowed_attention(attention_mask: torch.Tensor, causal: bool) -> torch.Tensor:
    """Boolean [B,T,T] mask from a [B,T] padding mask, True where a query may attend to a key."""
    T = attention_mask.shape[1]
    allowed = attention_mask.bool()[:, None, :].expand(-1, T, -1)
    if causal:
        allowed = allowed & torch.ones(T, T, dtype=torch.bool, device=allowed.device).tril()
    # A query that sees only padding (e.g. left padding under a causal mask) gets NaN from
    # softmax over nothing, which leaks into real positions as 0 * NaN; seeing itself avoids that.
    return allowed | torch.eye(T, dtype=torch.bool, device=allowed.device)


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float, bias: bool):
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.proj = nn.Linear(d_model, d_model, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, is_causal: bool, rope: Rope,
                kv: KeyValues = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_heads, -1).transpose(1, 2) for t in self.qkv(x).split(C, dim=-1))
        if rope is not None:
            q, k = _apply_rotary(q, *rope), _apply_rotary(k, *rope)
        if kv is not None:  # decoding: store these positions' keys/values, attend to every cached one
            k_cache, v_cache, index = kv
            k, v = k_cache.scatter_(2, index, k), v_cache.scatter_(2, index, v)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=self.dropout if self.training else 0.0
        )
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class MLP(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float, bias: bool, activation: str):
        super().__init__()
        self.fc = nn.Linear(d_model, d_ff, bias=bias)
        self.act = ACTIVATIONS[activation]()
        self.proj = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(self.act(self.fc(x))))


def _layer_norm(d_model: int, bias: bool, norm: bool) -> nn.Module:
    return nn.LayerNorm(d_model, bias=bias) if norm else nn.Identity()


class Block(nn.Module):
    """Pre-LN: x + f(LN(x)) (GPT-2). Post-LN: LN(x + f(x)) (the original Transformer, BERT)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, bias: bool, activation: str, norm: bool,
                 norm_position: str = "pre"):
        super().__init__()
        self.post_norm = norm_position == "post"
        self.ln1 = _layer_norm(d_model, bias, norm)
        self.attn = SelfAttention(d_model, n_heads, dropout, bias)
        self.ln2 = _layer_norm(d_model, bias, norm)
        self.mlp = MLP(d_model, d_ff, dropout, bias, activation)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, is_causal: bool, rope: Rope,
                kv: KeyValues = None) -> torch.Tensor:
        if self.post_norm:
            x = self.ln1(x + self.attn(x, mask, is_causal, rope, kv))
            return self.ln2(x + self.mlp(x))
        x = x + self.attn(self.ln1(x), mask, is_causal, rope, kv)
        return x + self.mlp(self.ln2(x))


class Transformer(nn.Module):
    """Transformer LM; causal (GPT-2) or bidirectional (BERT-style encoder with an LM head). Pre-LN, with a
    final LayerNorm; `norm_position="post"` normalises after each residual addition instead (Xiong et al. 2020
    compare the two), and then has no final LayerNorm: the last block's output is already normalised."""

    def __init__(
        self,
        vocab_size: int,
        max_seq_len: int,
        attention: str = "causal",
        d_model: int = 128,
        n_layers: int = 4,
        n_heads: int = 4,
        d_ff: int | None = None,
        dropout: float = 0.0,
        positions: str = "learned",
        bias: bool = True,
        tie_embeddings: bool = True,
        activation: str = "gelu",
        norm: bool = True,
        init: str = "gpt2",
        norm_position: str = "pre",
    ):
        super().__init__()
        check_choice("attention", attention, ATTENTION_TYPES)
        check_choice("norm_position", norm_position, NORM_POSITIONS)
        check_choice("positions", positions, POSITIONS)
        check_choice("activation", activation, tuple(ACTIVATIONS))
        check_choice("init", init, INITS)
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        head_dim = d_model // n_heads
        if positions == "rotary" and head_dim % 2 != 0:
            raise ValueError(f"positions=rotary needs an even head dim, got d_model/n_heads={head_dim}")
        self.vocab_size = vocab_size
        self.max_seq_len = max_seq_len
        self.attention = attention
        self.hidden_size = d_model
        self.n_heads = n_heads

        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_seq_len, d_model) if positions == "learned" else None
        if positions == "rotary":
            # Not persistent: derived from the shape, so checkpoints need not carry them.
            cos, sin = _rotary_tables(max_seq_len, head_dim)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.dropout = nn.Dropout(dropout)
        d_ff = 4 * d_model if d_ff is None else d_ff
        self.blocks = nn.ModuleList(
            Block(d_model, n_heads, d_ff, dropout, bias, activation, norm, norm_position) for _ in range(n_layers)
        )
        self.ln_f = _layer_norm(d_model, bias, norm and norm_position == "pre")
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        if tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight

        self._init_weights(init, n_layers)

    def _init_weights(self, init: str, n_layers: int) -> None:
        """`gpt2`: N(0, 0.02) everywhere, residual-stream writes scaled by 1/sqrt(2 * n_layers).
        `fan_in`: N(0, 1/fan_in) (embeddings: 1/d_model), as in Nanda et al.'s grokking model;
        GPT-2's much smaller init under weight decay 1.0 barely fits the training pairs.
        Biases start at zero in both."""
        def init_module(module: nn.Module) -> None:
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02 if init == "gpt2" else module.embedding_dim ** -0.5)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02 if init == "gpt2" else module.in_features ** -0.5)

        self.apply(init_module)
        if init == "gpt2":
            # Scale residual-stream writes so the residual variance does not grow with depth.
            for name, p in self.named_parameters():
                if name.endswith("attn.proj.weight") or name.endswith("mlp.proj.weight"):
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layers))

    def num_parameters(self) -> int:
        return num_parameters(self)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        check_seq_len(input_ids, self.max_seq_len)
        T = input_ids.shape[1]
        x = self.tok_emb(input_ids)
        if self.pos_emb is not None:
            x = x + self.pos_emb(torch.arange(T, device=input_ids.device))
        x = self.dropout(x)
        rope = (self.rope_cos[:T], self.rope_sin[:T]) if self.pos_emb is None else None
        causal = self.attention == "causal"
        # No mask lets SDPA take its fast path (is_causal=True for causal); [B,1,T,T] broadcasts over heads.
        mask = None if attention_mask is None else _allowed_attention(attention_mask, causal)[:, None]
        is_causal = causal and mask is None
        for block in self.blocks:
            x = block(x, mask, is_causal, rope)
        return self.ln_f(x)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.lm_head(self.encode(input_ids, attention_mask))

    def decoding_cache(self, batch_size: int, positions: int) -> torch.Tensor:
        """An empty key/value cache for `decode`, holding `positions` (<= max_seq_len) positions:
        [batch, layers, 2 (keys, values), heads, positions, head_dim]. Batch first, so a sampler
        keeps some rows with cache[rows]."""
        weight = self.tok_emb.weight
        return weight.new_zeros(batch_size, len(self.blocks), 2, self.n_heads, positions, self.hidden_size // self.n_heads)

    def decode(self, input_ids: torch.Tensor, start: torch.Tensor, cache: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, vocab_size] of a causal model for input_ids [B, T] whose row b holds the tokens
        at positions start[b] .. start[b]+T-1, each attending to the row's earlier positions in `cache`
        (from decoding_cache) and to itself; their keys and values are written into `cache`. What
        forward gives at those positions of the whole prefix, up to float rounding (the sampler's
        key/value cache: each new token costs one position, not a pass over the whole context)."""
        if self.attention != "causal":
            raise ValueError("decode needs a causal model: a bidirectional one's earlier positions see later tokens")
        positions = start[:, None] + torch.arange(input_ids.shape[1], device=input_ids.device)  # [B, T]
        cached = int(positions.max()) + 1
        if cached > cache.shape[4]:  # a readable error instead of scatter's index error
            raise ValueError(f"position {cached - 1} is beyond the cache's {cache.shape[4]} positions")
        x = self.tok_emb(input_ids)
        if self.pos_emb is not None:
            x = x + self.pos_emb(positions)
        x = self.dropout(x)
        rope = None if self.pos_emb is not None else (self.rope_cos[positions][:, None], self.rope_sin[positions][:, None])
        # Query at position p sees the cached keys 0..p: the causal mask, rows at their own offsets.
        mask = (torch.arange(cached, device=x.device) <= positions[..., None])[:, None]  # [B, 1, T, cached]
        index = positions[:, None, :, None].expand(-1, self.n_heads, -1, cache.shape[-1])
        for layer, block in enumerate(self.blocks):
            kv = (cache[:, layer, 0, :, :cached], cache[:, layer, 1, :, :cached], index)
            x = block(x, mask, False, rope, kv)
        return self.lm_head(self.ln_f(x))


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sine/cosine positions added to the embeddings, as in the PyTorch transformer tutorial."""

    def __init__(self, d_model: int, max_len: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        position = torch.arange(max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x + self.pe[: x.shape[1]])


class SeedEncoder(nn.Module):
    """The article's reference model: embedding + sinusoidal positions + ``nn.TransformerEncoder`` + LM head."""

    def __init__(
        self,
        vocab_size: int = 10000,
        max_seq_len: int = 512,
        attention: str = "bidirectional",
        d_model: int = 512,
        n_heads: int = 8,
        n_layers: int = 6,
        dropout: float = 0.1,
    ):
        super().__init__()
        check_choice("attention", attention, ATTENTION_TYPES)
        self.vocab_size = vocab_size
        self.max_seq_len = max_seq_len
        self.attention = attention
        self.hidden_size = d_model
        self.n_heads = n_heads

        self.embedding = nn.Embedding(vocab_size, d_model)
        self.pos_encoding = SinusoidalPositionalEncoding(d_model, max_seq_len, dropout)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, dropout=dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers)
        self.lm_head = nn.Linear(d_model, vocab_size)
        # The tutorial's init: small uniform embeddings, matching the sqrt(d_model) scaling in encode.
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.uniform_(self.lm_head.weight, -0.1, 0.1)
        nn.init.zeros_(self.lm_head.bias)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        check_seq_len(input_ids, self.max_seq_len)
        T = input_ids.shape[1]
        x = self.pos_encoding(self.embedding(input_ids) * math.sqrt(self.hidden_size))
        causal = self.attention == "causal"
        if attention_mask is None:
            # nn.MultiheadAttention's convention: True = may NOT attend.
            mask = torch.ones(T, T, dtype=torch.bool, device=input_ids.device).triu(1) if causal else None
            return self.encoder(x, mask=mask, is_causal=causal)
        # One per-head [B*H,T,T] mask rather than src_key_padding_mask, so rows of pure padding stay finite.
        blocked = ~_allowed_attention(attention_mask, causal)
        return self.encoder(x, mask=blocked.repeat_interleave(self.n_heads, dim=0))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.lm_head(self.encode(input_ids, attention_mask))
