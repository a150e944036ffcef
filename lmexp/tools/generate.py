"""`lmexp generate`: sample text from a causal LM run. `lmexp fill-mask`: probe a masked LM run.

    lmexp generate outputs/runs/<run> --prompt "ROMEO:" --max-new-tokens 200 --temperature 0.8 --top-k 50
    lmexp fill-mask outputs/runs/<run> "The capital of France is <mask>." --top-k 5

Both read the model, tokenizer and training config from the run's checkpoint (lmexp.runs.load).
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch import nn

from lmexp.errors import ConfigError
from lmexp.models.sampling import prompt_ids, sample
from lmexp.runs.load import add_run_arguments


def fill_mask(model: nn.Module, tokenizer, text: str, top_k: int) -> list[list[tuple[str, float]]]:
    """For each mask token in `text`, in order: the top_k (token, probability) predictions."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    positions = [i for i, token in enumerate(ids) if token == tokenizer.mask_token_id]
    if not positions:
        raise ConfigError(f"the text has no mask token; mark each word to predict as {tokenizer.mask_token}")
    if len(ids) > model.max_seq_len:
        raise ConfigError(f"the text is {len(ids)} tokens long; the model reads at most {model.max_seq_len}")
    device = next(model.parameters()).device
    with torch.no_grad():
        probs = model(torch.tensor([ids], device=device))[0, positions].float().softmax(dim=-1)
    top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    return [
        [(tokenizer.decode([token]), p) for token, p in zip(tokens.tolist(), ps.tolist())]
        for tokens, ps in zip(top.indices, top.values)
    ]


def require_causal_lm(run, name: str, command: str) -> None:
    """Only a causal LM run can continue a text: anything else is refused, naming the run."""
    if run.objective != "causal_lm":
        hint = f"; use `lmexp fill-mask {name} \"... {run.tokenizer.mask_token} ...\"`" \
            if run.objective == "masked_lm" else ""
        raise ConfigError(f"{name} is a {run.objective} run; {command} needs a causal_lm run{hint}")


def read_prompts(path: str, key: str) -> list[str]:
    """The non-empty lines of a prompt file; a missing or empty file is a one-line error naming `key`."""
    try:
        with open(path) as f:
            prompts = [line.rstrip("\n") for line in f if line.strip()]
    except OSError as err:
        raise ConfigError(f"{key} {path}: {err.strerror}") from None
    if not prompts:
        raise ConfigError(f"{key} {path}: the file has no prompts (expected one prompt per non-empty line)")
    return prompts


def _generate(run, options: argparse.Namespace) -> None:
    from transformers import TextStreamer

    class HeldText(TextStreamer):
        """A TextStreamer that keeps its text: of several items sampled together, each is printed
        whole when done, in order, as the same text a lone item streams."""

        def __init__(self, tokenizer) -> None:
            super().__init__(tokenizer)
            self.text = ""

        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            self.text += text + ("\n" if stream_end else "")

    require_causal_lm(run, options.run, "generate")
    prompts = [options.prompt] if options.prompt_file is None else read_prompts(options.prompt_file, "--prompt-file")
    items = [prompt for prompt in prompts for _ in range(options.num_samples)]
    ids = [prompt_ids(run.tokenizer, prompt) for prompt in items]
    # A lone item prints the prompt, then each token as it comes, holding back only an unfinished
    # character (a byte of a multi-byte character) or word until it is complete.
    streamers = [TextStreamer(run.tokenizer) if len(items) == 1 else HeldText(run.tokenizer) for _ in items]
    for streamer, prompt, prompt_tokens in zip(streamers, items, ids):
        streamer.put(torch.tensor(prompt_tokens if prompt else [], dtype=torch.long))
    stop_id = run.tokenizer.eos_token_id if options.stop_at_eos else None
    samples = sample(run.model.to(options.device), ids, options.max_new_tokens, options.temperature, options.top_k,
                     options.top_p, options.seed, stop_id, options.batch_size,
                     on_token=lambda item, token: streamers[item].put(torch.tensor([token])))
    for streamer, _ in zip(streamers, samples):
        streamer.end()
        if isinstance(streamer, HeldText):
            print(streamer.text, end="")
        print("-" * 15, flush=True)


def _fill_mask(run, options: argparse.Namespace) -> None:
    if run.objective != "masked_lm":
        hint = f"; use `lmexp generate {options.run}`" if run.objective == "causal_lm" else ""
        raise ConfigError(f"{options.run} is a {run.objective} run; fill-mask needs a masked_lm run{hint}")
    predictions = fill_mask(run.model.to(options.device), run.tokenizer, options.text, options.top_k)
    for n, best in enumerate(predictions, start=1):
        print(f"{run.tokenizer.mask_token} {n} of {len(predictions)}:")
        for token, p in best:
            print(f"  {p:8.2%}  {token!r}")


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"lmexp {command}")
    add_run_arguments(parser)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", default=device, help=f"torch device (default: {device})")
    if command == "fill-mask":
        parser.description = "Top-k predictions, with probabilities, for each mask token of a masked LM run."
        parser.add_argument("text", help="text with one or more mask tokens, spelled as the run's tokenizer does (e.g. <mask>)")
        parser.add_argument("--top-k", type=int, default=5, help="predictions per mask (default: 5)")
        return parser
    parser.description = ("Sample text from a causal LM run: one sample is streamed as it is produced; several "
                          "(a prompt file, --num-samples) are sampled in batches and each printed when done, in order.")
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", default="", help="text to continue (default: empty, a new document)")
    prompt.add_argument("--prompt-file", help="a file of prompts, one per non-empty line")
    add_sampling_arguments(parser)
    parser.add_argument("--num-samples", type=int, default=1, help="samples per prompt (default: 1)")
    return parser


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """How a text is continued (`lmexp generate` and `lmexp rate`): the same keys, the same defaults."""
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy decoding (default: 1.0)")
    parser.add_argument("--top-k", type=int, default=None, help="sample from the k most likely tokens only")
    parser.add_argument("--top-p", type=float, default=None, help="sample from the smallest set of tokens with this much probability")
    parser.add_argument("--seed", type=int, default=1337,
                        help="same seed, same samples; each sample has a generator of its own, seeded from this "
                             "seed and its place in the list of samples (default: 1337)")
    parser.add_argument("--stop-at-eos", action="store_true", help="end a sample at the end-of-document token")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="samples computed at once, one model call per token for all (default: 64); batching changes "
                             "logits by float rounding only, so keep it fixed to reproduce samples bit for bit")


def check_sampling(options: argparse.Namespace) -> None:
    """Bad sampling settings are reported before any model loads."""
    problems = [
        (options.top_k is not None and options.top_k < 1, "--top-k must be >= 1"),
        (options.temperature < 0, "--temperature must be >= 0"),
        (options.top_p is not None and not 0 < options.top_p <= 1, "--top-p must be in (0, 1]"),
        (options.max_new_tokens < 0, "--max-new-tokens must be >= 0"),
        (options.batch_size < 1, "--batch-size must be >= 1"),
    ]
    for failed, message in problems:
        if failed:
            raise ConfigError(message)


def _check(command: str, options: argparse.Namespace) -> None:
    """Bad numbers are reported before the model loads."""
    if command == "fill-mask" and options.top_k < 1:
        raise ConfigError("--top-k must be >= 1")
    if command == "generate":
        check_sampling(options)
        if options.num_samples < 1:
            raise ConfigError("--num-samples must be >= 1")


def main(argv: list[str]) -> int:
    """argv = [command, *args] with command `generate` or `fill-mask`; returns the exit code."""
    from lmexp.runs.load import load_trained_run

    command, args = argv[0], argv[1:]
    options = _parser(command).parse_args(args)
    try:
        _check(command, options)
        run = load_trained_run(options.run, trust=options.trust_checkpoint)
        (_generate if command == "generate" else _fill_mask)(run, options)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
