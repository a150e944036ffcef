"""lmexp: config-driven language-model experiments (Hydra + PyTorch Lightning + W&B)."""

from importlib import metadata

try:  # one version: pyproject.toml's, as installed (records, model cards and `lmexp --version` read it)
    __version__ = metadata.version("lmexp")
except metadata.PackageNotFoundError:  # run from a checkout that is not installed
    __version__ = "unknown"
