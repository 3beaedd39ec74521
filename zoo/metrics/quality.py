"""The three headline scores of one enhanced signal (the demo and the README table)."""
from __future__ import annotations

from ._signals import as_pair, check_sample_rate
from .intelligibility import stoi_score
from .perceptual import pesq_score
from .ratios import si_sdr


def quality_scores(enhanced, clean, sample_rate: int) -> dict[str, float]:
    """PESQ-wb, STOI and SI-SDR (dB) of mono ``enhanced`` against ``clean`` ([T] or [1, T]).

    The same functionals as :func:`~zoo.metrics.score_file_pair` (which adds the other measures):
    lengths are trimmed to the shorter with a warning, PESQ resamples to 16 kHz when needed.
    """
    enhanced, clean = as_pair(enhanced, clean, names=("enhanced", "clean"))
    sample_rate = check_sample_rate(sample_rate)
    return {
        "pesq_wb": pesq_score(enhanced, clean, sample_rate, "wb"),
        "stoi": stoi_score(enhanced, clean, sample_rate),
        "si_sdr": si_sdr(enhanced, clean),
    }
