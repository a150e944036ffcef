"""`lmexp rate`: blind side-by-side human ratings of two runs' generations.

    lmexp rate RUN_A RUN_B                  # generate from both runs → a rating session folder
    lmexp rate RUN_A RUN_B --serve          # ... and serve it at http://127.0.0.1:8000
    lmexp rate --serve SESSION              # serve an existing session (raters continue where they stopped)
    lmexp rate --report SESSION             # win rate, its interval, p-value, agreement → rating.json/.png, W&B

Runs are given as everywhere else (a run directory, a .ckpt file or `last`). The prompts come from
--prompts (one a line) or, by default, --num-prompts lines drawn (seeded) from RUN_A's own
validation split. Both runs continue every prompt with the same sampling settings (generate's
keys); each run's samples are those `lmexp generate RUN --prompt-file SESSION/prompts.txt` prints
with the same keys. The two runs may use different tokenizers: raters compare texts.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import sys
import time
from pathlib import Path

import torch

from lmexp.errors import ConfigError, ExpectedFailure
from lmexp.runs.load import RUN_HELP
from lmexp.tools.generate import add_sampling_arguments, check_sampling, read_prompts, require_causal_lm

# Default prompts: whole lines of the validation text, long enough to say something, short enough to read.
PROMPT_CHARS = (16, 160)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmexp rate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", metavar="RUN", help=f"RUN_A and RUN_B: {RUN_HELP}")
    parser.add_argument("--serve", nargs="?", const=True, metavar="SESSION",
                        help="serve the rating page on 127.0.0.1 (for the session just made, or SESSION)")
    parser.add_argument("--port", type=int, default=8000, help="the page's port on 127.0.0.1 (default: 8000)")
    parser.add_argument("--report", metavar="SESSION", help="report a session's ratings")
    parser.add_argument("--prompts", help="a file of prompts, one per non-empty line (default: lines of RUN_A's validation split)")
    parser.add_argument("--num-prompts", type=int, default=40, help="prompts drawn from the validation split (default: 40)")
    parser.add_argument("--session", help="the session folder to write (default: outputs/ratings/<time>_<A>_vs_<B>)")
    add_sampling_arguments(parser)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # as lmexp generate
    parser.add_argument("--device", default=device, help=f"torch device for generating (default: {device})")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="also load checkpoints that need Python objects beyond plain data (may run code)")
    return parser


def default_prompts(run, name: str, count: int, seed: int) -> list[str]:
    """`count` distinct lines of the run's validation split, drawn with `seed`."""
    from lmexp.build import instantiate_or_explain
    from lmexp.data.token_store import joined

    corpus = instantiate_or_explain(run.config.data.source, "data.source").load()
    texts = (text for split, block, _ in joined(corpus.blocks()) if split == "validation"
             for text in block)  # streamed, as training reads it
    low, high = PROMPT_CHARS
    lines = sorted({line.rstrip() for text in texts for line in text.splitlines()
                    if len(line.strip()) >= low and len(line.rstrip()) <= high})
    if not lines:
        raise ConfigError(f"{name}: its validation split has no line of {low} to {high} characters to use as a "
                          f"prompt; pass --prompts FILE")
    return random.Random(seed).sample(lines, min(count, len(lines)))


def continuations(run, prompts: list[str], options: argparse.Namespace) -> list[str]:
    """Each prompt continued by the run, sampled in batches as `lmexp generate --prompt-file` does
    (prompt k is item k: the same generator seed, the same text)."""
    from lmexp.models.sampling import prompt_ids, sample

    stop_id = run.tokenizer.eos_token_id if options.stop_at_eos else None
    samples = sample(run.model.to(options.device), [prompt_ids(run.tokenizer, prompt) for prompt in prompts],
                     options.max_new_tokens, options.temperature, options.top_k, options.top_p, options.seed, stop_id,
                     options.batch_size)
    return [run.tokenizer.decode(new) for new in samples]


def describe(run, given: str) -> dict:
    """What the sealed key says about a run: how it was named and where it is."""
    return {"run": given, "name": run.run_dir.name if run.run_dir else Path(run.checkpoint_path).stem,
            "checkpoint": str(Path(run.checkpoint_path).resolve())}


def wandb_place(run) -> dict:
    """The run's W&B project and group (a sweep's group is given at run time: read from its W&B run)."""
    from lmexp.wandb_offline import find_offline_runs, read_offline_run

    node = run.config.get("logger", {}).get("wandb") or {}
    group = node.get("group")
    offline = find_offline_runs(run.run_dir / "wandb") if run.run_dir and (run.run_dir / "wandb").is_dir() else []
    if offline:
        group = read_offline_run(offline[-1]).group or group
    return {"project": node.get("project"), "group": group}


def make_session(options: argparse.Namespace) -> Path:
    from lmexp.runs.load import load_trained_run
    from lmexp.tools.rating.session import check_new, write_session

    if len(options.runs) != 2:
        raise ConfigError(f"lmexp rate needs two runs, RUN_A and RUN_B; got {len(options.runs)}")
    if options.session:
        check_new(Path(options.session))  # before minutes of generating, not after
    check_sampling(options)
    if options.num_prompts < 1:
        raise ConfigError("--num-prompts must be >= 1")
    prompts = read_prompts(options.prompts, "--prompts") if options.prompts else None
    runs = {}
    for label, given in zip("AB", options.runs):
        runs[label] = load_trained_run(given, trust=options.trust_checkpoint)
        require_causal_lm(runs[label], given, "rate")
    if prompts is None:
        prompts = default_prompts(runs["A"], options.runs[0], options.num_prompts, options.seed)
    start = time.perf_counter()
    generations = {label: continuations(run, prompts, options) for label, run in runs.items()}
    print(f"generated {len(prompts)} prompts x 2 runs in {time.perf_counter() - start:.1f} s")

    key = {label: describe(run, given) for (label, run), given in zip(runs.items(), options.runs)}
    places = [wandb_place(run) for run in runs.values()]
    # The report's W&B run joins the runs' group; runs in two groups: neither.
    key["wandb"] = {"project": places[0]["project"], "group": places[0]["group"] if places[0] == places[1] else None}
    key["sampling"] = {k: getattr(options, k) for k in
                       ("max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop_at_eos")}
    key["prompts"] = os.path.abspath(options.prompts) if options.prompts else f"validation split of {options.runs[0]}"
    folder = Path(options.session or Path(os.environ.get("LMEXP_OUTPUT_ROOT", "outputs")) / "ratings" /
                  f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{secrets.token_hex(2)}_{key['A']['name']}_vs_{key['B']['name']}")
    write_session(folder, prompts, generations, key)
    print(f"rating session: {folder} ({len(prompts)} items)")
    return folder


def serve(folder: Path, port: int) -> None:
    try:
        from lmexp.tools.rating.server import start_server
    except ImportError as err:
        raise ConfigError(f"lmexp rate --serve needs {err.name}: pip install 'lmexp[rate]'") from None
    from lmexp.tools.rating.session import Session

    server = start_server(Session(folder), port)
    print(f"rating page: http://127.0.0.1:{server.server_port}/  (ratings are saved as they are given; "
          f"Ctrl-C stops; report: lmexp rate --report {folder})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def report(folder: str) -> None:
    try:
        from lmexp.tools.rating.report import write_report
    except ImportError as err:
        raise ConfigError(f"lmexp rate --report needs {err.name}: pip install 'lmexp[rate]'") from None
    summary = write_report(folder)
    print(f"A = {summary['A']['name']}, B = {summary['B']['name']}, {summary['items']} items")
    for name, row in [*summary["raters"].items(), ("pooled", summary["pooled"])]:
        rate = "-" if row["A_win_rate"] is None else \
            f"{row['A_win_rate']:.2f} [{row['ci95'][0]:.2f}, {row['ci95'][1]:.2f}] p={row['p_value']:.3g}"
        print(f"  {name:<16} A {row['A_wins']:>3}  B {row['B_wins']:>3}  tie {row['ties']:>3}  "
              f"both bad {row['both_bad']:>3}  A's win rate {rate}")
    for pair in summary["agreement"]["pairs"]:
        print(f"  Cohen's kappa {' / '.join(pair['raters'])} ({pair['items']} items): {pair['cohen_kappa']}")
    if summary["agreement"]["fleiss"]:
        fleiss = summary["agreement"]["fleiss"]
        print(f"  Fleiss' kappa, {len(fleiss['raters'])} raters ({fleiss['items']} items): {fleiss['fleiss_kappa']}")
    print(f"verdict: {summary['verdict']}")
    print(f"written: {Path(folder) / 'rating.json'}, {Path(folder) / 'rating.png'}; W&B (offline): {summary['wandb_dir']}")


def main(argv: list[str]) -> int:
    """argv = ["rate", *args]; returns the exit code."""
    options = _parser().parse_args(argv[1:])
    try:
        if options.report:
            if options.runs or options.serve:
                raise ConfigError("--report SESSION takes no runs and no --serve")
            report(options.report)
        elif options.runs:
            if isinstance(options.serve, str):
                raise ConfigError("give either RUN_A RUN_B --serve (a new session) or --serve SESSION, not both")
            folder = make_session(options)
            if options.serve:
                serve(folder, options.port)
        elif isinstance(options.serve, str):
            serve(Path(options.serve), options.port)
        else:
            raise ConfigError("lmexp rate needs RUN_A RUN_B, --serve SESSION or --report SESSION (see --help)")
    except ExpectedFailure as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
