"""STOI and extended STOI through ``pystoi``."""
from __future__ import annotations

from pystoi import stoi as _stoi

from ._signals import as_pair, check_sample_rate


def stoi_score(preds, target, sample_rate: int, extended: bool = False) -> float:
    """STOI or, with ``extended=True``, ESTOI of ``preds`` (enhanced) against ``target`` (clean).

    STOI: Taal, Hendriks, Heusdens & Jensen, IEEE TASLP 19(7):2125-2136, 2011, sec. II::

        d = 1/(J M) sum_{j,m} corr( x_{j,m}, clip(alpha_{j,m} y_{j,m}) )

    the mean correlation between the clean and the normalised, clipped (-15 dB SDR bound)
    enhanced one-third-octave band envelopes over 384 ms segments. ESTOI: Jensen & Taal, IEEE
    TASLP 24(11):2009-2022, 2016 (spectral correlation of row- and column-normalised segments).

    Computed by ``pystoi``, which resamples to 10 kHz itself (any input rate) and removes frames
    more than 40 dB below the reference's loudest. Silent signals give pystoi's own values (0 for
    STOI, about 0 for ESTOI), not NaN.
    """
    enhanced, clean = as_pair(preds, target)
    return float(_stoi(clean, enhanced, check_sample_rate(sample_rate), extended=extended))
