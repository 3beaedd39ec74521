"""The composite measures CSIG, CBAK and COVL of Hu & Loizou (2008), as in Loizou's ``composite.m``."""
from __future__ import annotations

import math
import warnings

import numpy as np

from ._signals import as_pair, check_sample_rate, resample
from .llr import llr_frames, reduce_llr
from .perceptual import pesq_at_native_rate
from .segmental import segmental_snr
from .wss import weighted_spectral_slope

COMPOSITE_RATES = (8000, 16000)  # the rates composite.m accepts; others are resampled to 16 kHz
COMPOSITE_RESAMPLE_TO = 16000


def composite_from_measures(pesq: float, llr: float, wss: float, seg_snr: float) -> dict[str, float]:
    """The regressions of Hu & Loizou, "Evaluation of objective quality measures for speech
    enhancement", IEEE TASLP 16(1):229-238, 2008 (the multiple linear regressions
    of its composite measures), as coded in ``composite.m``::

        CSIG = 3.093 - 1.029 LLR + 0.603 PESQ - 0.009 WSS          (signal distortion)
        CBAK = 1.634 + 0.478 PESQ - 0.007 WSS + 0.063 segSNR       (background intrusiveness)
        COVL = 1.594 + 0.805 PESQ - 0.512 LLR - 0.007 WSS          (overall quality)

    each clipped to the rating scale [1, 5]. ``llr`` is the composite variant (frames not clamped
    at 2, lowest 95 % kept), ``wss`` and ``seg_snr`` as :func:`weighted_spectral_slope` and
    :func:`segmental_snr`. A NaN PESQ (silent reference) gives NaN composites.
    """
    raw = {"csig": 3.093 - 1.029 * llr + 0.603 * pesq - 0.009 * wss,
           "cbak": 1.634 + 0.478 * pesq - 0.007 * wss + 0.063 * seg_snr,
           "covl": 1.594 + 0.805 * pesq - 0.512 * llr - 0.007 * wss}
    return {key: (math.nan if math.isnan(value) else float(np.clip(value, 1.0, 5.0))) for key, value in raw.items()}


def composite_measures(preds, target, sample_rate: int) -> dict[str, float]:
    """``{"csig", "cbak", "covl"}`` of ``preds`` (enhanced) against ``target`` (clean reference).

    Hu & Loizou (2008): see :func:`composite_from_measures`. PESQ is the wide-band MOS-LQO
    (P.862.2) at 16 kHz and the narrow-band MOS-LQO (P.862 + P.862.1) at 8 kHz (Loizou's MATLAB
    used the raw narrow-band P.862 score at 8 kHz; the ``pesq`` package returns MOS-LQO). LLR, WSS
    and segSNR are computed at the same rate. ``composite.m`` is defined at 8 and 16 kHz only: any
    other rate is resampled to 16 kHz first, with a warning.
    """
    enhanced, clean = as_pair(preds, target)
    enhanced, clean, sample_rate = at_composite_rate(enhanced, clean, check_sample_rate(sample_rate))
    return composite_at_native_rate(enhanced, clean, sample_rate)


def at_composite_rate(enhanced: np.ndarray, clean: np.ndarray, sample_rate: int):
    if sample_rate in COMPOSITE_RATES:
        return enhanced, clean, sample_rate
    warnings.warn(f"the composite measures (CSIG, CBAK, COVL) are defined at 8 or 16 kHz: the signals were "
                  f"resampled from {sample_rate} Hz to {COMPOSITE_RESAMPLE_TO} Hz "
                  "(torchaudio.functional.resample)", stacklevel=3)
    return (resample(enhanced, sample_rate, COMPOSITE_RESAMPLE_TO), resample(clean, sample_rate, COMPOSITE_RESAMPLE_TO),
            COMPOSITE_RESAMPLE_TO)


def composite_at_native_rate(enhanced: np.ndarray, clean: np.ndarray, sample_rate: int,
                             pesq: float | None = None) -> dict[str, float]:
    """The composites of checked float64 signals at 8 or 16 kHz (``pesq``: reuse a score already had)."""
    if pesq is None:
        pesq = pesq_at_native_rate(enhanced, clean, sample_rate, "wb" if sample_rate >= 16000 else "nb")
    return composite_from_measures(
        pesq=pesq,
        llr=reduce_llr(llr_frames(enhanced, clean, sample_rate), used_for_composite=True),
        wss=weighted_spectral_slope(enhanced, clean, sample_rate),
        seg_snr=segmental_snr(enhanced, clean, sample_rate),
    )
