"""lmexp's Hydra launchers (Hydra accepts launcher plugins only from the hydra_plugins package)."""
