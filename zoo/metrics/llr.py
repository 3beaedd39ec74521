"""LPC log-likelihood ratio (Itakura's LLR), as in Loizou's ``comp_llr.m``/``composite.m`` and pysepm's ``llr``."""
from __future__ import annotations

import numpy as np

from ._signals import EPS, as_pair, check_sample_rate, frame_geometry, frames, loizou_hann

LLR_CLAMP = 2.0  # per-frame ceiling of the stand-alone measure (comp_llr.m); not used in composite.m
KEPT_FRACTION = 0.95  # the lowest 95 % of frame distortions are averaged, the rest discarded as outliers
DEGENERATE_FRAME_RATIO = 1000.0  # pysepm's value for a frame whose ratio is not positive


def log_likelihood_ratio(preds, target, sample_rate: int, used_for_composite: bool = False,
                         frame_seconds: float = 0.03, overlap: float = 0.75) -> float:
    """Mean LLR of ``preds`` (enhanced) against ``target`` (clean reference); 0 is identical, lower is better.

    Quackenbush, Barnwell & Clements, *Objective Measures of Speech Quality* (1988), and Hu &
    Loizou, IEEE TASLP 16(1), 2008, sec. II-B::

        d_LLR(a_p, a_c) = log( a_p R_c a_p^T / (a_c R_c a_c^T) )

    per frame, where ``a_c``, ``a_p`` are the LPC vectors ``[1, -alpha_1 .. -alpha_P]`` of the clean
    and enhanced frame (order P = 10 below 10 kHz, else 16; autocorrelation method, Levinson-Durbin)
    and ``R_c`` is the Toeplitz autocorrelation matrix of the clean frame. Frames: Hann-windowed,
    30 ms, 75 % overlap, after adding eps to both signals (so digital silence still has an LPC
    model); the last frame is dropped. Each frame value is ``log(ratio)``; a ratio that is not
    positive counts as 1000 (pysepm), and so does one that is not finite (a degenerate LPC fit:
    pysepm would return inf or NaN there). The stand-alone measure (``used_for_composite=False``,
    ``comp_llr.m``) clamps each frame at 2; the composite's (``composite.m``) does not. Both then
    average the lowest 95 % of frames.
    """
    enhanced, clean = as_pair(preds, target)
    per_frame = llr_frames(enhanced, clean, check_sample_rate(sample_rate), frame_seconds, overlap)
    return reduce_llr(per_frame, used_for_composite)


def llr_frames(enhanced: np.ndarray, clean: np.ndarray, sample_rate: int, frame_seconds: float = 0.03,
               overlap: float = 0.75) -> np.ndarray:
    """Per-frame ``log(ratio)`` before clamping and trimming (float64 vectors of equal length)."""
    window, hop = frame_geometry(sample_rate, frame_seconds, overlap)
    order = 10 if sample_rate < 10000 else 16
    count = (clean.size - window) // hop
    hann = loizou_hann(window)
    clean_frames = frames(clean + EPS, window, hop, count, "LLR") * hann
    enhanced_frames = frames(enhanced + EPS, window, hop, count, "LLR") * hann
    r_clean = autocorrelation(clean_frames, order)
    a_clean = levinson_durbin(r_clean, order)
    a_enhanced = levinson_durbin(autocorrelation(enhanced_frames, order), order)
    lags = np.abs(np.arange(order + 1)[:, None] - np.arange(order + 1)[None, :])
    toeplitz_clean = r_clean[:, lags]  # [F, P+1, P+1]
    with np.errstate(all="ignore"):
        numerator = np.einsum("fi,fij,fj->f", a_enhanced, toeplitz_clean, a_enhanced)
        denominator = np.einsum("fi,fij,fj->f", a_clean, toeplitz_clean, a_clean)
        ratio = numerator / denominator
        ratio[~np.isfinite(ratio) | (ratio <= 0)] = DEGENERATE_FRAME_RATIO
        return np.log(ratio)


def reduce_llr(per_frame: np.ndarray, used_for_composite: bool) -> float:
    distortion = per_frame if used_for_composite else np.minimum(per_frame, LLR_CLAMP)
    kept = np.sort(distortion)[: int(round(len(distortion) * KEPT_FRACTION))]
    return float(np.mean(kept))


def autocorrelation(frames_: np.ndarray, order: int) -> np.ndarray:
    """Lags 0..order of each row: ``R[k] = sum_n x[n] x[n+k]``; [F, order+1]."""
    length = frames_.shape[-1]
    return np.stack([np.sum(frames_[:, : length - k] * frames_[:, k:], axis=-1) for k in range(order + 1)],
                    axis=-1)


def levinson_durbin(r: np.ndarray, order: int) -> np.ndarray:
    """LPC polynomials ``[1, -a_1 .. -a_P]`` of each row of autocorrelations: the Levinson-Durbin
    recursion exactly as Loizou's ``lpcoeff.m`` (and pysepm's ``lpcoeff``) run it, over all frames
    at once; a zero prediction error gives an infinite reflection coefficient, as there."""
    count = r.shape[0]
    a = np.ones((count, order))
    energy = r[:, 0].copy()
    with np.errstate(all="ignore"):
        for i in range(order):
            a_past = a[:, :i].copy()
            sum_term = np.sum(a_past * r[:, i:0:-1], axis=-1)
            reflection = np.where(energy == 0.0, np.inf, (r[:, i + 1] - sum_term) / energy)
            a[:, i] = reflection
            if i > 0:
                a[:, :i] = a_past - reflection[:, None] * a_past[:, ::-1]
            energy = (1 - reflection * reflection) * energy
    return np.concatenate([np.ones((count, 1)), -a], axis=-1)
