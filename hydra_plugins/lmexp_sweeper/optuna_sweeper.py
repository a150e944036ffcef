"""The Hydra plugin of lmexp's Optuna sweeper (conf/hydra/sweeper/optuna.yaml); the sweeper itself
is in _search.py. Hydra imports every module of hydra_plugins at each start (except those whose
name starts with `_`): this one stays light, and Optuna loads only when a search runs."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings = settings

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra_plugins.lmexp_sweeper._search import OptunaSearch

        self.search = OptunaSearch(**self.settings)
        self.search.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.search.sweep(arguments)
