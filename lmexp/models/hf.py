"""Hugging Face models behind the lmexp model contract, built from a config or loaded pretrained."""

import torch
from torch import nn

from lmexp.models import ATTENTION_TYPES, check_choice, check_seq_len

# model_type -> (config class name, config key holding the max positions, the one attention it supports)
MODEL_TYPES = {
    "gpt2": ("GPT2Config", "n_positions", "causal"),
    "bert": ("BertConfig", "max_position_embeddings", "bidirectional"),
    "llama": ("LlamaConfig", "max_position_embeddings", "causal"),
}
ENCODER_KIND = {"causal": "decoder", "bidirectional": "encoder"}


class HFModel(nn.Module):
    """A transformers LM head model; ``hf_model`` is the raw model, ready for ``save_pretrained``."""

    def __init__(
        self,
        model_type: str,
        vocab_size: int,
        max_seq_len: int,
        attention: str,
        pretrained: str | None = None,
        pad_token_id: int | None = None,
        **config_kwargs,
    ):
        super().__init__()
        check_choice("model_type", model_type, tuple(MODEL_TYPES))
        check_choice("attention", attention, ATTENTION_TYPES)
        config_name, positions_key, supported = MODEL_TYPES[model_type]
        if attention != supported:
            raise ValueError(
                f"model_type={model_type} is a {supported} {ENCODER_KIND[supported]} "
                f"and cannot be used with attention={attention}"
            )
        # Imported here because transformers takes seconds to import and most runs never need it.
        import transformers

        config_cls = getattr(transformers, config_name)
        self._check_config_kwargs(config_cls, config_kwargs)
        auto_cls = transformers.AutoModelForCausalLM if attention == "causal" else transformers.AutoModelForMaskedLM
        if pretrained is None:
            if pad_token_id is not None:
                config_kwargs["pad_token_id"] = pad_token_id
            config = config_cls(vocab_size=vocab_size, **{positions_key: max_seq_len}, **config_kwargs)
            self.hf_model = auto_cls.from_config(config)
        else:
            # config_kwargs override the saved config (e.g. dropout for fine-tuning).
            self.hf_model = auto_cls.from_pretrained(pretrained, **config_kwargs)
            if pad_token_id is not None:
                self.hf_model.config.pad_token_id = pad_token_id
            embedding_size = self.hf_model.get_input_embeddings().num_embeddings
            if vocab_size > embedding_size:
                raise ValueError(
                    f"vocab_size={vocab_size} exceeds the embedding size {embedding_size} of pretrained={pretrained}"
                )
            max_positions = getattr(self.hf_model.config, positions_key)
            if max_seq_len > max_positions:
                raise ValueError(
                    f"max_seq_len={max_seq_len} exceeds the max positions {max_positions} of pretrained={pretrained}"
                )
        self.model_type = model_type
        self.vocab_size = vocab_size
        self.max_seq_len = max_seq_len
        self.attention = attention
        self.hidden_size = self.hf_model.config.hidden_size

    @staticmethod
    def _check_config_kwargs(config_cls, config_kwargs: dict) -> None:
        # Config classes store unknown keys silently, so a typo would otherwise be ignored.
        known = set(config_cls().to_dict()) | set(config_cls.attribute_map)
        unknown = sorted(set(config_kwargs) - known)
        if unknown:
            raise ValueError(f"unknown {config_cls.__name__} keys: {', '.join(unknown)}")
        positions = sorted({"n_positions", "max_position_embeddings"} & set(config_kwargs))
        if positions:
            raise ValueError(f"set max_seq_len instead of {', '.join(positions)}")

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        check_seq_len(input_ids, self.max_seq_len)
        # The base model's last hidden state is hidden_states[-1] of the full model (after the final
        # norm where there is one), without computing logits or keeping every layer's states.
        return self.hf_model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        check_seq_len(input_ids, self.max_seq_len)
        logits = self.hf_model(input_ids=input_ids, attention_mask=attention_mask).logits
        # A pretrained embedding may be larger than our vocabulary; those extra rows are never targets.
        return logits[..., : self.vocab_size]
