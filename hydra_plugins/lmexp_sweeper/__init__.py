"""lmexp's Optuna sweeper."""
