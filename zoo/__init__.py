"""zoo: a model zoo for speech and signal denoising on PyTorch Lightning.

>>> import zoo
>>> zoo.list_models()
>>> model = zoo.load("wiener")
>>> clean = model.enhance(noisy, sample_rate=48000)
"""
__version__ = "0.1.0"

from .module import DenoiserModule  # noqa: E402
from .registry import ModelEntry, UnknownModelError, list_models, register  # noqa: E402
from .hub import load, publish  # noqa: E402
from . import models  # noqa: E402,F401  (registers every model)

__all__ = ["DenoiserModule", "ModelEntry", "UnknownModelError", "list_models", "load", "publish", "register"]
