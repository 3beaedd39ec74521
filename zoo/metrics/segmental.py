"""Segmental SNR (time domain), as in Loizou's ``comp_snr.m`` and pysepm's ``SNRseg``."""
from __future__ import annotations

import numpy as np

from ._signals import EPS, as_pair, check_sample_rate, frame_geometry, frames, loizou_hann

MIN_SEGMENT_DB = -10.0  # per-frame limits of Loizou's code
MAX_SEGMENT_DB = 35.0


def segmental_snr(preds, target, sample_rate: int, frame_seconds: float = 0.03, overlap: float = 0.75) -> float:
    """Mean per-frame SNR in dB of ``preds`` (enhanced) against ``target`` (clean reference).

    The segSNR of Hu & Loizou, "Evaluation of objective quality measures for speech enhancement",
    IEEE TASLP 16(1):229-238, 2008, sec. II-A (after Hansen & Pellom 1998), as coded in Loizou's
    ``comp_snr.m`` (*Speech Enhancement: Theory and Practice*, 2nd ed., 2013) and pysepm::

        segSNR = 1/M * sum_m 10 log10( sum_n x(n,m)^2 / (sum_n (x(n,m) - y(n,m))^2 + eps) + eps )

    over Hann-windowed frames ``x(., m)`` of the clean and ``y(., m)`` of the enhanced signal,
    30 ms long with 75 % overlap (480 samples, hop 120 at 16 kHz); the last frame of the strided
    view is dropped, as pysepm does. Each frame's SNR is clamped to [-10, 35] dB before averaging:
    silent reference frames count as -10 dB (so digital silence scores -10 dB, never -inf or NaN),
    and a frame reproduced exactly counts as +35 dB. Silent frames are not removed (Loizou's
    convention). Any sample rate; the frame length is in seconds.
    """
    enhanced, clean = as_pair(preds, target)
    window, hop = frame_geometry(check_sample_rate(sample_rate), frame_seconds, overlap)
    count = (clean.size - window) // hop
    hann = loizou_hann(window)
    clean_frames = frames(clean, window, hop, count, "segmental SNR") * hann
    enhanced_frames = frames(enhanced, window, hop, count, "segmental SNR") * hann
    signal_energy = np.sum(clean_frames ** 2, axis=-1)
    noise_energy = np.sum((clean_frames - enhanced_frames) ** 2, axis=-1)
    per_frame = 10 * np.log10(signal_energy / (noise_energy + EPS) + EPS)
    return float(np.mean(np.clip(per_frame, MIN_SEGMENT_DB, MAX_SEGMENT_DB)))
