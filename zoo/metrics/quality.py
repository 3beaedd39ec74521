"""Scores of one enhanced signal against its clean reference.

PESQ (ITU-T P.862.2 wide band, via the ``pesq`` package), STOI (``pystoi``) and SI-SDR, all
through torchmetrics' functional wrappers so that the numbers match what training logs.
"""
from __future__ import annotations

import warnings

import torch
from torchmetrics.functional.audio import (
    perceptual_evaluation_speech_quality,
    scale_invariant_signal_distortion_ratio,
    short_time_objective_intelligibility,
)

from ..audio import resample

PESQ_RATE = 16000  # wide-band PESQ is defined at 16 kHz


def quality_scores(enhanced: torch.Tensor, clean: torch.Tensor, sample_rate: int) -> dict[str, float]:
    """PESQ-wb, STOI and SI-SDR (dB) of mono ``enhanced`` against ``clean`` ([T] or [1, T])."""
    enhanced, clean = enhanced.reshape(-1).double(), clean.reshape(-1).double()
    if enhanced.shape != clean.shape:
        length = min(enhanced.numel(), clean.numel())
        warnings.warn(f"enhanced ({enhanced.numel()}) and clean ({clean.numel()}) lengths differ; "
                      f"both trimmed to {length} samples", stacklevel=2)
        enhanced, clean = enhanced[:length], clean[:length]
    at16 = [resample(x.float(), sample_rate, PESQ_RATE).double() for x in (enhanced, clean)]
    return {
        "pesq_wb": float(perceptual_evaluation_speech_quality(at16[0], at16[1], PESQ_RATE, "wb")),
        "stoi": float(short_time_objective_intelligibility(enhanced, clean, sample_rate)),
        "si_sdr": float(scale_invariant_signal_distortion_ratio(enhanced, clean)),
    }
