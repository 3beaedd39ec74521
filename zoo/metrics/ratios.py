"""SNR and SI-SDR through torchmetrics' functionals (the numbers training logs)."""
from __future__ import annotations

import torch
from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio, signal_noise_ratio

from ._signals import as_pair


def si_sdr(preds, target) -> float:
    """Scale-invariant SDR in dB (Le Roux et al., "SDR - half-baked or well done?", ICASSP 2019)::

        SI-SDR = 10 log10( ||a s||^2 / ||a s - s_hat||^2 ),  a = <s_hat, s> / ||s||^2

    by ``torchmetrics`` in float64 (which adds eps to numerator and denominator, so silent signals
    give finite values: two silent signals score 0 dB).
    """
    enhanced, clean = as_pair(preds, target)
    return float(scale_invariant_signal_distortion_ratio(torch.from_numpy(enhanced), torch.from_numpy(clean)))


def snr(preds, target) -> float:
    """SNR in dB, ``10 log10( ||s||^2 / ||s - s_hat||^2 )``, by ``torchmetrics`` in float64 (eps
    added to both norms, as there: finite for silent signals)."""
    enhanced, clean = as_pair(preds, target)
    return float(signal_noise_ratio(torch.from_numpy(enhanced), torch.from_numpy(clean)))
