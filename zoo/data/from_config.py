"""A data module built from the ``data`` block of a ``zoo fit`` recipe or a run's config.yaml.

Recipes come in two parts: a shared data block (``recipes/data/NAME.yaml``) and a model recipe
(``recipes/MODEL/NAME.yaml``: model and trainer), given to ``zoo fit`` as two ``--config`` files,
the data block first so that the model recipe's values win::

    zoo fit --config recipes/data/shared-data.yaml --config recipes/can-l1/shared-data.yaml

A model recipe names its data block in the ``zoo fit`` command of its header comment;
:func:`recipe_configs` reads it from there, so that code given one recipe (``zoo finetune``,
``python -m zoo.data.write_mixtures``) builds the same data as ``zoo fit`` does. A run's resolved
``config.yaml`` holds its whole data block and composes with nothing.
"""
from __future__ import annotations

import copy
import importlib
import re
from pathlib import Path

import yaml

#: how a model recipe's header names the shared data block it composes with
_DATA_CONFIG = re.compile(r"--config\s+(?:\S*/)?recipes/data/([\w.-]+\.ya?ml)")


def _read(config) -> dict:
    path = Path(config)
    try:
        return yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such recipe or config file") from None


def recipe_configs(recipe) -> list[Path]:
    """The ``--config`` files ``zoo fit`` takes for ``recipe``, in order: the shared data block that
    the ``zoo fit`` command in the recipe's comments names (``recipes/data/NAME.yaml``, looked up
    beside the recipe's folder), then the recipe itself. A data block, a recipe that names none or
    a run's config.yaml is ``[recipe]``."""
    recipe = Path(recipe)
    comments = "\n".join(line.split("#", 1)[1] for line in recipe.read_text().splitlines() if "#" in line)
    names = list(dict.fromkeys(_DATA_CONFIG.findall(comments)))
    if not names or recipe.parent.name == "data":
        return [recipe]
    if len(names) > 1:
        raise ValueError(f"{recipe}: its comments name {len(names)} data blocks ({', '.join(names)}); "
                         "a model recipe composes with one (recipes/data/NAME.yaml)")
    data = recipe.resolve().parent.parent / "data" / names[0]
    if not data.is_file():
        raise FileNotFoundError(f"{recipe} composes with recipes/data/{names[0]}, which is not in {data.parent}")
    return [data, recipe]


def merge_data_blocks(blocks: list[dict | None]) -> dict | None:
    """``data`` blocks merged as LightningCLI merges several ``--config`` files: a later
    ``class_path`` replaces an earlier one (and its ``init_args``), the same one (or none) updates
    the earlier ``init_args`` key by key."""
    merged = None
    for block in blocks:
        if not block:
            continue
        if merged is None or (block.get("class_path") and block["class_path"] != merged.get("class_path")):
            merged = copy.deepcopy(block)
            continue
        merged = {**merged, "init_args": {**(merged.get("init_args") or {}), **(block.get("init_args") or {})}}
    return merged


def data_block(*configs) -> dict | None:
    """The ``data`` block (``class_path`` and ``init_args``) ``zoo fit`` builds from these recipe or
    config.yaml files: each model recipe with the shared data block it composes with
    (:func:`recipe_configs`), merged in order. None when none of them has one."""
    paths = {Path(path).resolve(): path for config in configs for path in recipe_configs(config)}.values()
    return merge_data_blocks([_read(path).get("data") for path in paths])


def data_module_from_block(data: dict, stage: str | None = "fit", **overrides):
    """The LightningDataModule ``data`` names, with ``overrides`` on its init_args, set up for
    ``stage`` (None: not set up). Raises what the class raises for bad arguments or missing files."""
    module_name, _, class_name = data["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    module = cls(**{**(data.get("init_args") or {}), **overrides})
    if stage is not None:
        module.setup(stage)
    return module
