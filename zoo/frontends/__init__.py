"""Signal front-ends shared by the models, the data layer, the measures and the plots.

- :mod:`zoo.frontends.stft`: framing, windows, STFT / iSTFT, noisy-phase resynthesis (torch only);
- :mod:`zoo.frontends.masking`: :class:`~zoo.frontends.masking.MaskingDenoiser`, the base of
  spectral masking models (a ``DenoiserModule``, so it imports Lightning).

Nothing is imported here eagerly, so that the data layer can frame signals
(``from zoo.frontends.stft import frames``) without loading model code; ``STFT``,
``MaskingDenoiser`` and ``SpectralFeatures`` are importable from the package on first use.
"""
from __future__ import annotations

import importlib

_LAZY = {"STFT": "zoo.frontends.stft", "MaskingDenoiser": "zoo.frontends.masking",
         "SpectralFeatures": "zoo.frontends.masking"}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
