"""Runs as records on disk: the summary.json schema, reading runs and checkpoints back, resuming,
starting from an earlier run, and sweeps of runs. Imports the core (lmexp.*), never the tools."""
