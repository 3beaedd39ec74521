"""Sample-wise distances for synthetic signal sets: RMSE and PSNR."""
from __future__ import annotations

import math

import numpy as np

from ._signals import EPS, as_pair


def rmse(preds, target) -> float:
    """Root-mean-square error ``sqrt( mean_n (s_hat[n] - s[n])^2 )``, in the signals' own units."""
    enhanced, clean = as_pair(preds, target)
    return float(np.sqrt(np.mean((enhanced - clean) ** 2)))


def psnr(preds, target) -> float:
    """Peak SNR in dB, ``20 log10( peak / RMSE )`` with ``peak = max_n |s[n]|``, the reference's
    largest magnitude (not a nominal full scale, so that it suits synthetic signals of any level).

    Computed as ``10 log10( (peak^2 + eps) / (RMSE^2 + eps) )``, eps the float64 machine epsilon
    (the guard torchmetrics' SNR uses), so it is finite everywhere: identical signals give a large
    finite value (about 156 dB + 20 log10 peak) and two silent signals 0 dB.
    """
    enhanced, clean = as_pair(preds, target)
    peak = float(np.max(np.abs(clean)))
    mse = float(np.mean((enhanced - clean) ** 2))
    return 10 * math.log10((peak * peak + EPS) / (mse + EPS))
