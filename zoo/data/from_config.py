"""A data module built from the ``data`` block of a ``zoo fit`` recipe or a run's config.yaml."""
from __future__ import annotations

import importlib
from pathlib import Path

import yaml


def data_block(config) -> dict | None:
    """The ``data`` block (``class_path`` and ``init_args``) of a recipe or config.yaml file."""
    return (yaml.safe_load(Path(config).read_text()) or {}).get("data")


def data_module_from_block(data: dict, stage: str | None = "fit", **overrides):
    """The LightningDataModule ``data`` names, with ``overrides`` on its init_args, set up for
    ``stage`` (None: not set up). Raises what the class raises for bad arguments or missing files."""
    module_name, _, class_name = data["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    module = cls(**{**(data.get("init_args") or {}), **overrides})
    if stage is not None:
        module.setup(stage)
    return module
