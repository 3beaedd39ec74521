"""PESQ (ITU-T P.862 narrow band, P.862.2 wide band) through the ``pesq`` package, with the edge
cases the package leaves to its callers: other sample rates, silent signals, failures."""
from __future__ import annotations

import math
import warnings

import numpy as np
from pesq import NoUtterancesError, PesqError
from pesq import pesq as _pesq

from ._signals import as_pair, check_sample_rate, resample

PESQ_RATES = {"wb": (16000,), "nb": (8000, 16000)}  # what P.862.2 / P.862 (and the package) accept
RESAMPLE_TO = {"wb": 16000, "nb": 8000}


def _mos_lqo(raw: float, slope: float, offset: float) -> float:
    """The MOS-LQO mapping the ``pesq`` package applies (P.862.1 narrow band, P.862.2 wide band)."""
    return 0.999 + 4.0 / (1.0 + math.exp(-slope * raw + offset))


# Score of an enhanced signal that is digital silence while the reference holds speech: the
# package cannot score it (its level alignment divides by zero), and leaving such files out would
# flatter a system that mutes its output, so they get the bottom of the scale: the MOS-LQO of the
# lowest raw P.862 score, -0.5 (wide band 1.043, narrow band 1.017; white noise scores about 1.04).
SILENT_OUTPUT_SCORE = {"wb": _mos_lqo(-0.5, 1.3669, 3.8224), "nb": _mos_lqo(-0.5, 1.4945, 4.6607)}


def pesq_score(preds, target, sample_rate: int, mode: str = "wb") -> float:
    """PESQ MOS-LQO of ``preds`` (enhanced) against ``target`` (clean reference).

    ITU-T P.862 (2001) with the P.862.1 mapping (``mode="nb"``) or P.862.2 (2007) wide band
    (``mode="wb"``), computed by the ``pesq`` package (ludlows/PESQ, the ITU reference C code).
    Wide band needs 16 kHz and narrow band 8 or 16 kHz: other rates are resampled (to 16 kHz for
    wide band, 8 kHz for narrow band, ``torchaudio.functional.resample``) with a warning.

    Edge cases (each with a warning): a reference that is digital silence, or in which the
    package finds no utterance, returns NaN (PESQ is undefined; averages leave the file out); an
    enhanced signal that is digital silence returns :data:`SILENT_OUTPUT_SCORE` (the bottom of
    the scale); any other failure of the package returns NaN. Values beyond +-1 are fine (the
    package normalises the level).
    """
    if mode not in PESQ_RATES:
        raise ValueError(f"mode must be 'wb' (wide band) or 'nb' (narrow band), got {mode!r}")
    enhanced, clean = as_pair(preds, target)
    sample_rate = check_sample_rate(sample_rate)
    if sample_rate not in PESQ_RATES[mode]:
        new_rate = RESAMPLE_TO[mode]
        warnings.warn(f"PESQ {'wide' if mode == 'wb' else 'narrow'} band is defined at "
                      f"{' or '.join(f'{r // 1000} kHz' for r in PESQ_RATES[mode])}: the signals were "
                      f"resampled from {sample_rate} Hz to {new_rate} Hz (torchaudio.functional.resample)",
                      stacklevel=2)
        enhanced, clean = resample(enhanced, sample_rate, new_rate), resample(clean, sample_rate, new_rate)
        sample_rate = new_rate
    return pesq_at_native_rate(enhanced, clean, sample_rate, mode)


def pesq_at_native_rate(enhanced: np.ndarray, clean: np.ndarray, sample_rate: int, mode: str) -> float:
    """:func:`pesq_score` for checked float64 signals already at a rate PESQ accepts."""
    if not clean.any():
        warnings.warn("PESQ is undefined when the reference is digital silence: returning NaN", stacklevel=3)
        return math.nan
    if not enhanced.any():
        score = SILENT_OUTPUT_SCORE[mode]
        warnings.warn(f"the enhanced signal is digital silence: PESQ-{mode} scored {score:.3f}, the bottom of "
                      "the MOS-LQO scale", stacklevel=3)
        return score
    try:
        return float(_pesq(sample_rate, clean, enhanced, mode))
    except NoUtterancesError:
        warnings.warn("PESQ found no utterances in the reference (is it silent or far too quiet?): "
                      "returning NaN", stacklevel=3)
    except (PesqError, ValueError) as error:
        warnings.warn(f"PESQ failed ({type(error).__name__}: {error}): returning NaN", stacklevel=3)
    return math.nan
