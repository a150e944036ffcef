"""`lmexp prepare OVERRIDES`: preprocess a run's data into the cache (its token store) without
training, so that every later run of the same data and tokenizer (any model, block size, seed,
sweep job) starts from it. Takes the overrides lmexp-train takes; prints one line per split.
A killed `prepare` run again goes on from the shards it finished."""

from __future__ import annotations

import sys

from hydra import compose, initialize_config_dir

from lmexp.config import config_dir, register_resolvers, validate
from lmexp.errors import ExpectedFailure


def prepare(overrides: list[str]):
    """The prepared data module of the run these overrides describe."""
    from lmexp.build import build_datamodule, build_objective, data_failure

    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        # No run directory: the config's own would come from Hydra's runtime.
        cfg = compose("train", overrides=["paths.output_dir=${paths.output_root}", *overrides])
    validate(cfg)
    datamodule = build_datamodule(cfg, build_objective(cfg))
    try:
        datamodule.prepare()
    except (OSError, UnicodeDecodeError) as err:
        raise data_failure(cfg.paths.get("cache_dir"), err) from err
    return datamodule


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    if any(arg in ("-h", "--help") for arg in argv[1:]):
        print(__doc__)
        return 0
    try:
        datamodule = prepare(argv[1:])
    except ExpectedFailure as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    info = datamodule.preprocessing_info
    print(f"{'cache hit' if datamodule.cache_hit else 'built'} in {datamodule.preprocess_s:.2f} s: "
          f"{info.get('store', 'no store')}")
    for name, tokens in info.get("tokens", {}).items():
        print(f"  {name}: {tokens:,} tokens")
    if info.get("tokenizer_text_bytes"):
        print(f"  tokenizer trained on {info['tokenizer_text_bytes']:,} bytes of text")
    return 0


if __name__ == "__main__":
    sys.exit(main())
