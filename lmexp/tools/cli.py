"""`lmexp <command>`: the umbrella for everything besides training and evaluation.

Each command lives in its own module with a `main(argv) -> int`; it is imported only when run,
so `lmexp --help` stays instant.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": ("lmexp.train", "train a model (same as lmexp-train)"),
    "eval": ("lmexp.evaluate", "evaluate a checkpoint (same as lmexp-eval)"),
    "compare": ("lmexp.tools.compare", "runs and sweeps side by side; --baseline: CIs and p-values"),
    "experiments": ("lmexp.tools.reproduce", "list the paper reproductions and claims (lmexp's and --config-dir yours)"),
    "reproduce": ("lmexp.tools.reproduce", "check an experiment (--curve) or a claim; re-run a past run"),
    "generate": ("lmexp.tools.generate", "sample text from a causal LM run"),
    "fill-mask": ("lmexp.tools.generate", "top-k predictions for masked tokens of an MLM run"),
    "export": ("lmexp.tools.export", "write a run as a Hugging Face model directory"),
    "rate": ("lmexp.tools.rate", "people rate two runs' samples blind, in a browser; --report: win rate"),
    "prepare": ("lmexp.tools.prepare", "preprocess a run's data into the cache (token store), no training"),
}


def usage() -> str:
    lines = ["usage: lmexp <command> [args]", "", "commands:"]
    lines += [f"  {name:<12} {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command '{command}'; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    if command in ("train", "eval"):
        sys.argv = [f"lmexp {command}", *rest]  # Hydra reads its overrides from sys.argv
        module.main()
        return 0
    return int(module.main([command, *rest]) or 0)


if __name__ == "__main__":
    sys.exit(main())
