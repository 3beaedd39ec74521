"""pysepm-evo 0.1.1 made importable, as the reference implementation of segSNR, LLR and WSS.

pysepm-evo is broken as shipped; the repairs live here, in the tests, never in zoo/:

- ``pysepm_evo.util`` imports ``scipy.signal.kaiser``, removed in SciPy 1.13: alias it to
  ``scipy.signal.windows.kaiser`` (the same function);
- ``pysepm_evo.reverberationMeasures`` imports ``srmrpy``, which the package does not declare:
  a stub module stands in (only ``srmr()`` would use it, and the tests do not call it);
- ``pysepm_evo.composite`` reads an undefined ``mos_lqo``: :func:`composite` below is its body
  with the PESQ score passed in.
"""
from __future__ import annotations

import sys
import types

import numpy as np
import scipy.signal
import scipy.signal.windows

if not hasattr(scipy.signal, "kaiser"):
    scipy.signal.kaiser = scipy.signal.windows.kaiser
sys.modules.setdefault("srmrpy", types.ModuleType("srmrpy"))

import pysepm_evo  # noqa: E402

SNRseg = pysepm_evo.SNRseg
llr = pysepm_evo.llr
wss = pysepm_evo.wss


def composite(clean_speech, processed_speech, fs, pesq_value):
    """pysepm's ``composite`` (Loizou's ``composite.m``) with its undefined PESQ score supplied."""
    wss_dist = wss(clean_speech, processed_speech, fs)
    llr_mean = llr(clean_speech, processed_speech, fs, used_for_composite=True)
    seg_snr = SNRseg(clean_speech, processed_speech, fs)
    csig = 3.093 - 1.029 * llr_mean + 0.603 * pesq_value - 0.009 * wss_dist
    cbak = 1.634 + 0.478 * pesq_value - 0.007 * wss_dist + 0.063 * seg_snr
    covl = 1.594 + 0.805 * pesq_value - 0.512 * llr_mean - 0.007 * wss_dist
    return tuple(float(np.clip(value, 1, 5)) for value in (csig, cbak, covl))
