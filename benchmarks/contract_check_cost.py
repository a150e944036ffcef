"""What the model/objective contract check before `fit` costs (lmexp.build.check_by_doing: one
forward and one loss on two real validation rows), against a whole `debug=fast` run of the same
configuration, in one process, alternated over several rounds.

    python benchmarks/contract_check_cost.py --rounds 3            # the default model
    python benchmarks/contract_check_cost.py --rounds 3 model=bert_tiny objective=masked_lm

Prints each round's run wall time (the record's wall_time_s, which includes the check) and the
check's time, then the median ratio check / run. The issue's bound: at most 1%.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds of run, then check")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the configuration measured")
    args = parser.parse_args()

    from hydra import compose, initialize_config_dir

    from lmexp.build import build_parts, check_by_doing
    from lmexp.config import config_dir, register_resolvers
    from lmexp.runs.record import RunRecord
    from lmexp.train import train

    register_resolvers()
    root = Path(tempfile.mkdtemp(prefix="lmexp-contract-bench-"))
    runs, checks = [], []
    for round_ in range(args.rounds):
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose("train", overrides=["debug=fast", "logger=csv", f"paths.output_root={root}",
                                              f"paths.output_dir={root / str(round_)}",
                                              f"paths.cache_dir={root / 'cache'}", *args.overrides])
        train(cfg)
        runs.append(RunRecord.read(root / str(round_)).wall_time_s)
        parts = build_parts(cfg)  # data from the cache the run filled
        start = time.perf_counter()
        check_by_doing(cfg, parts)
        checks.append(time.perf_counter() - start)
        print(f"round {round_ + 1}: debug=fast run {runs[-1]:.2f} s, contract check {checks[-1] * 1000:.1f} ms")
    ratio = statistics.median(c / r for c, r in zip(checks, runs))
    print(f"contract check / debug=fast run: {ratio:.4%} (median of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
