"""Where configs are found: lmexp's own conf/ and the user's config folders, one resolver for every
place that lists or resolves them (experiments, claims, curves, the plug-in groups of a run).

A user's config folder is laid out like conf/: `experiment/<name>.yaml` for experiments and claims
(with their curve files next to them), `model/<name>.yaml` and the other groups for plug-ins. The
folders come from `--config-dir DIR` (repeatable) and the environment variable LMEXP_CONFIG_PATH
(folders separated by `:`); Hydra sees them through `hydra.searchpath`, the same mechanism a user
types for `lmexp-train "hydra.searchpath=[file://DIR]" experiment=...`. A name found in two
folders is an error naming both files: Hydra would silently take the first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lmexp.config import config_dir
from lmexp.errors import ConfigError

ENV = "LMEXP_CONFIG_PATH"


@dataclass(frozen=True)
class ConfigFile:
    name: str  # the option's name: experiment=<name>
    path: Path  # the YAML file
    user: bool  # from the user's folder, not lmexp's conf/


def user_config_dirs(given: list[str] | tuple[str, ...] = ()) -> list[Path]:
    """The user's config folders: the given ones (--config-dir), then LMEXP_CONFIG_PATH's; absolute."""
    named = [*given, *(p for p in os.environ.get(ENV, "").split(os.pathsep) if p)]
    folders = []
    for folder in named:
        path = Path(folder).expanduser().resolve()
        if not path.is_dir():
            where = f"{ENV}={os.environ.get(ENV)}" if folder not in given else f"--config-dir {folder}"
            raise ConfigError(f"{where}: {path} is not a folder (expected a config folder with experiment/, model/, ...)")
        if path not in folders and path != Path(config_dir()).resolve():
            folders.append(path)
    return folders


def find_options(group: str, user_dirs: list[Path]) -> dict[str, ConfigFile]:
    """Every option of a config group, lmexp's first, name → file; a name in two folders is an error."""
    found: dict[str, ConfigFile] = {}
    for folder, user in [(Path(config_dir()), False), *((d, True) for d in user_dirs)]:
        for path in sorted((folder / group).glob("*.yaml")):
            if path.stem in found:
                raise ConfigError(f"{group}={path.stem} is defined twice: {found[path.stem].path} and {path}; "
                                  "rename one of them")
            found[path.stem] = ConfigFile(path.stem, path, user)
    return found


def find_option(group: str, name: str, user_dirs: list[Path]) -> ConfigFile:
    options = find_options(group, user_dirs)
    if name not in options:
        where = ", ".join(str(d) for d in [Path(config_dir()), *user_dirs])
        raise ConfigError(f"unknown {group} '{name}' (searched {where}); {group}s: {', '.join(sorted(options))}")
    return options[name]


def searchpath_override(user_dirs: list[Path]) -> list[str]:
    """The Hydra override that adds the user's folders to the search path (none without folders)."""
    if not user_dirs:
        return []
    return [f"hydra.searchpath=[{','.join(f'file://{d}' for d in user_dirs)}]"]


def compose(overrides: list[str], user_dirs: list[Path], config_name: str = "train") -> DictConfig:
    """A config composed as `lmexp-train` would with the user's folders on Hydra's search path."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    from lmexp.config import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        try:
            return hydra_compose(config_name, overrides=[*searchpath_override(user_dirs), *overrides])
        except HydraException as err:  # a bad override, an unknown option: Hydra's own words, one line
            lines = [line for line in str(err).splitlines() if line.strip()]
            raise ConfigError(" — ".join(lines[:2])) from None


def check_choices_unique(runtime: DictConfig | None) -> None:
    """For a run composed by Hydra: every group option it chose exists in one of the search path's
    folders only (Hydra takes the first silently; lmexp refuses, naming both files)."""
    if runtime is None:
        return
    folders = [Path(source.path) for source in runtime.runtime.config_sources
               if source.schema == "file" and source.provider != "hydra"]
    for group, option in OmegaConf.to_container(runtime.runtime.choices).items():
        if not isinstance(option, str) or group.startswith("hydra"):
            continue
        files = [folder / group / f"{option}.yaml" for folder in folders]
        files = list(dict.fromkeys(f.resolve() for f in files if f.is_file()))
        if len(files) > 1:
            raise ConfigError(f"{group}={option} is defined twice: {files[0]} and {files[1]}; rename one of them")


def is_group(key: str, user_dirs: list[Path]) -> bool:
    """Whether an override's key names a config group (`optimizer=adam`) rather than a value."""
    return any((folder / key).is_dir() for folder in [Path(config_dir()), *user_dirs])
