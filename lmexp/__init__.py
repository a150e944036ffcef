"""lmexp: config-driven language-model experiments (Hydra + PyTorch Lightning + W&B)."""

__version__ = "0.1.0"
