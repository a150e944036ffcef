"""The `lmexp` commands beside training and evaluation (cli.py dispatches): compare, reproduce,
generate, export, and what they use (statistics, tables, curves, the W&B offline reader)."""
