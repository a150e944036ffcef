"""A sequence classifier on any lmexp model: backbone.encode → pooling → dropout → linear head.

The backbone keeps its LM head (unused here: it gets no gradient), so its state dict stays that
of the LM it came from and a pretraining run's weights load into it as they are.
"""

import torch
from torch import nn

from lmexp.models import check_choice

POOLINGS = ("auto", "cls", "mean", "last")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """[B, T, H] → [B, H]: the first token (cls), the mean over real tokens, or the last real token.

    `last` assumes right padding (the collator's), so the last real token sits at length - 1.
    """
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":
        last = attention_mask.sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


class Classifier(nn.Module):
    """`forward(input_ids, attention_mask) -> logits [B, num_classes]`.

    pooling `auto`: the backbone's `default_pooling` if it has one (a bag of n-grams: mean), else the
    mean for a bidirectional encoder and the last real token for a causal decoder (the only one that
    has seen the whole sequence). `cls` is refused for a causal
    decoder: its first token sees only itself.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, pooling: str = "auto", dropout: float = 0.1,
                 freeze_backbone: bool = False):
        super().__init__()
        check_choice("pooling", pooling, POOLINGS)
        if pooling == "auto":
            pooling = getattr(backbone, "default_pooling", "last" if backbone.attention == "causal" else "mean")
        if pooling == "cls" and backbone.attention == "causal":
            raise ValueError("the first token of a causal decoder sees only itself; use pooling=last or mean")
        self.backbone = backbone
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.hidden_size, num_classes)
        self.num_classes = num_classes
        self.attention = backbone.attention
        self.max_seq_len = backbone.max_seq_len
        self.hidden_size = backbone.hidden_size
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> "Classifier":
        super().train(mode)
        if self.freeze_backbone:
            # A frozen backbone is a fixed feature extractor: no dropout noise in its features.
            self.backbone.eval()
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.backbone.encode(input_ids, attention_mask)
        return self.head(self.dropout(pool(hidden, attention_mask, self.pooling)))
