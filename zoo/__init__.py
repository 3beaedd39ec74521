"""zoo: a model zoo for speech and signal denoising on PyTorch Lightning.

>>> import zoo
>>> zoo.list_models()
>>> model = zoo.load("wiener")
>>> clean = model.enhance(noisy, sample_rate=48000)

The public names are imported on first use (PEP 562): ``import zoo`` and ``zoo.list_models()``
cost no torch import, so ``zoo list``, ``zoo info`` and ``zoo --help`` start in well under 2 s.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> the module that defines it
_LAZY = {
    "DenoiserModule": "zoo.module",
    "ModelEntry": "zoo.registry",
    "UnknownModelError": "zoo.registry",
    "list_models": "zoo.registry",
    "register": "zoo.registry",
    "load": "zoo.hub",
    "publish": "zoo.hub",
}

__all__ = ["DenoiserModule", "ModelEntry", "UnknownModelError", "list_models", "load", "publish", "register"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        try:  # a submodule: zoo.models, zoo.audio ...
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'zoo' has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
