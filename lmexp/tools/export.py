"""`lmexp export <run> <out>`: write a run as a directory plain `transformers` loads.

    AutoModelForCausalLM.from_pretrained(out)   # or ...ForMaskedLM, per the run's objective
    AutoTokenizer.from_pretrained(out)

Models built with transformers (model=hf_*) are saved as they are. A native `Transformer` is
written as the standard architecture that computes exactly the same function, GPT-2 for a causal
decoder, and the export checks the logits of both on random input. An option without an exact
equivalent is refused, naming the option, rather than exported as a model that computes
something else.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

from lmexp.errors import ConfigError

AUTO_CLASS = {"causal_lm": "AutoModelForCausalLM", "masked_lm": "AutoModelForMaskedLM"}
# The converted model must give the same logits as the native one, up to float32 rounding.
TOLERANCE = 1e-4


def refuse(reason: str) -> ConfigError:
    return ConfigError(f"{reason}; export refused")


def gpt2_from_native(model: nn.Module, tokenizer) -> nn.Module:
    """The GPT-2 (transformers' GPT2LMHeadModel) with exactly the weights and operations of a native
    causal `Transformer`; options GPT-2 cannot express are refused."""
    from transformers import GPT2Config, GPT2LMHeadModel

    if model.attention != "causal":
        raise refuse("model.attention=bidirectional: a pre-LN encoder has no exact Hugging Face "
                     "equivalent (BERT is post-LN, with an embedding LayerNorm and an MLM head transform)")
    if model.pos_emb is None:
        raise refuse("model.positions=rotary: GPT-2 has learned absolute positions only")
    if model.blocks[0].post_norm:
        raise refuse("model.norm_position=post: GPT-2 is pre-LN (LayerNorm before attention and MLP, and a final one)")
    if isinstance(model.ln_f, nn.Identity):
        raise refuse("model.norm=false: GPT-2 always applies LayerNorm")
    first = model.blocks[0]
    config = GPT2Config(
        vocab_size=model.vocab_size,
        n_positions=model.max_seq_len,
        n_embd=model.hidden_size,
        n_layer=len(model.blocks),
        n_head=first.attn.n_heads,
        n_inner=first.mlp.fc.out_features,
        # transformers' "gelu" is the exact (erf) GELU of nn.GELU(); GPT-2's default "gelu_new" is the tanh approximation.
        activation_function="relu" if isinstance(first.mlp.act, nn.ReLU) else "gelu",
        layer_norm_epsilon=model.ln_f.eps,
        resid_pdrop=model.dropout.p, embd_pdrop=model.dropout.p, attn_pdrop=first.attn.dropout,
        tie_word_embeddings=model.lm_head.weight is model.tok_emb.weight,
        **special_token_ids(tokenizer),
    )
    gpt2 = GPT2LMHeadModel(config)
    gpt2.load_state_dict(_gpt2_weights(model))
    return gpt2.eval()


def _gpt2_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The native weights under GPT-2's names. GPT-2's Conv1D stores a linear layer's weight as
    [in, out], the transpose of nn.Linear; a native model without biases gets zero biases, which
    compute the same. The fused qkv projection keeps its q, k, v order in both."""
    weights = {
        "transformer.wte.weight": model.tok_emb.weight,
        "transformer.wpe.weight": model.pos_emb.weight,
        "transformer.ln_f.weight": model.ln_f.weight,
        "transformer.ln_f.bias": _bias(model.ln_f, model.hidden_size),
        "lm_head.weight": model.lm_head.weight,
    }
    for i, block in enumerate(model.blocks):
        layers = {"ln_1": block.ln1, "attn.c_attn": block.attn.qkv, "attn.c_proj": block.attn.proj,
                  "ln_2": block.ln2, "mlp.c_fc": block.mlp.fc, "mlp.c_proj": block.mlp.proj}
        for name, layer in layers.items():
            linear = isinstance(layer, nn.Linear)
            size = layer.out_features if linear else layer.normalized_shape[0]
            weights[f"transformer.h.{i}.{name}.weight"] = layer.weight.T if linear else layer.weight
            weights[f"transformer.h.{i}.{name}.bias"] = _bias(layer, size)
    return weights


def special_token_ids(tokenizer) -> dict[str, int | None]:
    return {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}


def _bias(layer: nn.Module, size: int) -> torch.Tensor:
    return layer.bias if layer.bias is not None else torch.zeros(size)


def to_transformers(run) -> nn.Module:
    """The run's model as a transformers PreTrainedModel, ready for save_pretrained."""
    from lmexp.models.hf import HFModel
    from lmexp.models.transformer import Transformer

    if run.objective == "classification":
        raise refuse("objective=classification: lmexp's classifier (pooled states, then a linear head with a bias) "
                     "has no exact transformers equivalent (BERT pools [CLS] through a dense+tanh pooler; "
                     "GPT-2's and Llama's score layer has no bias)")
    if run.objective not in AUTO_CLASS:
        raise refuse(f"objective={run.objective}: only causal_lm and masked_lm runs are exported")
    if isinstance(run.model, HFModel):
        hf_model = run.model.hf_model
        # A model built from a config keeps the config class's defaults (GPT-2's 50256), which
        # may not even be in this vocabulary; generate() reads them from its generation config.
        configs = [hf_model.config, *([hf_model.generation_config] if hf_model.can_generate() else [])]
        for config in configs:
            for name, value in special_token_ids(run.tokenizer).items():
                setattr(config, name, value)
        return hf_model
    if isinstance(run.model, Transformer):
        converted = gpt2_from_native(run.model, run.tokenizer)
        _check_same_logits(run.model, converted)
        return converted
    raise refuse(f"model={type(run.model).__name__}: no exact Hugging Face equivalent "
                 "(only native Transformer and hf_* models are exported)")


def _check_same_logits(native: nn.Module, converted: nn.Module) -> None:
    ids = torch.randint(native.vocab_size, (2, min(native.max_seq_len, 16)), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = (native(ids) - converted(input_ids=ids).logits).abs().max().item()
    if difference > TOLERANCE:
        raise refuse(f"the converted {type(converted).__name__} differs from the native model "
                     f"(max |logit difference| {difference:.2e})")


def save_tokenizer(tokenizer, out: Path, max_length: int) -> None:
    tokenizer.save_pretrained(out)
    path = out / "tokenizer_config.json"
    config = json.loads(path.read_text())
    # transformers 5 names a plain tokenizers-backed tokenizer "TokenizersBackend", which 4.x does
    # not know; both load it as PreTrainedTokenizerFast.
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["model_max_length"] = max_length
    path.write_text(json.dumps(config, indent=2) + "\n")


def model_card(run, architecture: str) -> str:
    from lmexp import __version__
    from lmexp.runs.record import SUMMARY, RunRecord

    summary = None
    if run.run_dir is not None and (run.run_dir / SUMMARY).is_file():
        summary = RunRecord.read(run.run_dir)
    command = (" ".join(["lmexp-train", *map(shlex.quote, summary.overrides)])
               if summary else "unknown (no summary.json next to the checkpoint)")
    git = (summary.git if summary else None) or {}
    rows = [f"| {name} | {value:.4f} |" for name, value in (summary.metrics if summary else {}).items() if value is not None]
    metrics = "\n".join(["| metric | value |", "|---|---|", *rows]) if rows else \
        "Not recorded (no summary.json next to the checkpoint)."
    auto = AUTO_CLASS[run.objective]
    yaml = {key: OmegaConf.to_yaml(run.config[key]).strip() for key in ("model", "data", "tokenizer")}
    return f"""---
library_name: transformers
tags: [lmexp, {run.objective}]
---
# {run.run_dir.name if run.run_dir else Path(run.checkpoint_path).stem}

A `{run.objective}` model trained with lmexp {__version__}, exported as `{architecture}`.

```python
from transformers import {auto}, AutoTokenizer
model = {auto}.from_pretrained("<this directory>")
tokenizer = AutoTokenizer.from_pretrained("<this directory>")
```

lmexp encoded its training text with `add_special_tokens=False` and ended every document with
`{run.tokenizer.eos_token}`.

## Training

Command: `{command}`

Objective: `{run.config.objective._target_}`

Model:
```yaml
{yaml["model"]}
```

Data:
```yaml
{yaml["data"]}
```

Tokenizer ({len(run.tokenizer)} tokens):
```yaml
{yaml["tokenizer"]}
```

The full resolved training config is in `training_config.yaml`.
Seed {run.config.get("seed")}; lmexp git commit {git.get("commit")}{" (with uncommitted changes)" if git.get("dirty") else ""}.

## Final metrics

{metrics}

Metrics are those of the run's final model (summary.json). Exported checkpoint: `{run.checkpoint_path}`.
"""


def export(run, out: Path) -> str:
    """Write `run` into `out` (config.json, model.safetensors, tokenizer, README.md); returns the architecture."""
    hf_model = to_transformers(run)
    architecture = type(hf_model).__name__
    hf_model.save_pretrained(out)
    save_tokenizer(run.tokenizer, out, run.model.max_seq_len)
    OmegaConf.save(run.config, out / "training_config.yaml")
    (out / "README.md").write_text(model_card(run, architecture))
    return architecture


def main(argv: list[str]) -> int:
    """argv = ["export", run, out]; returns the exit code."""
    from lmexp.runs.load import add_run_arguments, load_trained_run

    parser = argparse.ArgumentParser(prog="lmexp export", description=__doc__.split("\n\n")[0])
    add_run_arguments(parser)
    parser.add_argument("out", help="a new or empty directory to write")
    options = parser.parse_args(argv[1:])
    out = Path(options.out)
    try:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ConfigError(f"{out}: exists and is not an empty directory")
        run = load_trained_run(options.run, trust=options.trust_checkpoint)
        architecture = export(run, out)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"exported {architecture} to {out}")
    return 0
