"""What every measure does to its inputs first: checks, length matching, framing, resampling.

All measures take ``preds`` (the enhanced or degraded signal) before ``target`` (the clean
reference), as torchmetrics does, as numpy arrays or torch tensors, and compute in float64.
Sample rates are checked and signals resampled by :mod:`zoo.audio` (one definition for the
whole zoo), and frames are cut by :mod:`zoo.frontends.stft` with Loizou's parameters.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from ..audio import check_sample_rate, resample  # noqa: F401  (the measures import them from here)
from ..frontends.stft import frames as framed_signal

EPS = np.finfo(np.float64).eps  # the eps of Loizou's MATLAB code and of pysepm


# Integer PCM is scaled to [-1, 1) by its full-scale value, as zoo.audio and soundfile do.
_PCM_SCALE = {np.dtype(np.int8): 128.0, np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0}


def as_signal(wave, name: str) -> np.ndarray:
    """A mono signal as a float64 numpy vector; ``[T]`` or ``[1, T]``; refuses NaN, inf, empty.

    Float samples are taken as they are (values beyond +-1 are fine); int8/int16/int32 arrays
    are PCM and scaled by their full-scale value.
    """
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().cpu()
        array = (wave.double() if wave.is_floating_point() else wave).numpy()  # bfloat16 has no numpy type
    else:
        array = np.asarray(wave)
    if array.dtype in _PCM_SCALE:
        array = array.astype(np.float64) / _PCM_SCALE[array.dtype]
    elif np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float64)
    else:
        raise ValueError(f"{name} has dtype {array.dtype}; pass float samples (or int16/int32 PCM)")
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 1:
        raise ValueError(f"{name} has shape {tuple(array.shape)}; a per-file measure needs one mono signal [T] "
                         "(score channels one at a time; batches go to the Metric classes as [B, T])")
    if array.size == 0:
        raise ValueError(f"{name} is empty (0 samples): there is nothing to score")
    finite = np.isfinite(array)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(f"{name} contains {bad.size} NaN or infinite samples (first at sample {bad[0]}); "
                         "quality measures need finite audio: repair it (e.g. numpy.nan_to_num) or leave the "
                         "file out")
    return array


def as_pair(preds, target, *, names: tuple[str, str] = ("preds", "target")) -> tuple[np.ndarray, np.ndarray]:
    """Both signals checked; different lengths are trimmed to the shorter, with a warning."""
    enhanced, reference = as_signal(preds, names[0]), as_signal(target, names[1])
    if enhanced.size != reference.size:
        length = min(enhanced.size, reference.size)
        warnings.warn(f"{names[0]} ({enhanced.size} samples) and {names[1]} ({reference.size} samples) differ in "
                      f"length; both trimmed to the shorter, {length} samples, before scoring", stacklevel=3)
        enhanced, reference = enhanced[:length], reference[:length]
    return enhanced, reference


def frame_geometry(sample_rate: int, frame_seconds: float, overlap: float) -> tuple[int, int]:
    """Window and hop in samples, computed exactly as Loizou's MATLAB code and pysepm do
    (``round(frameLen*fs)``, ``floor((1-overlap)*frameLen*fs)``): 480 and 120 at 16 kHz."""
    window = round(frame_seconds * sample_rate)
    hop = int(np.floor((1 - overlap) * frame_seconds * sample_rate))
    if window < 2 or hop < 1:
        raise ValueError(f"frames of {frame_seconds} s with overlap {overlap} at {sample_rate} Hz are "
                         f"{window} samples with a hop of {hop}: too short to analyse")
    return window, hop


def loizou_hann(length: int) -> np.ndarray:
    """``0.5*(1-cos(2*pi*(1:L)/(L+1)))``: the Hann window of Loizou's code (no zero end points),
    i.e. the symmetric Hann window of ``L + 2`` samples without its two zeros."""
    return 0.5 * (1 - np.cos(2 * np.pi * np.arange(1, length + 1) / (length + 1)))


def frames(wave: np.ndarray, window: int, hop: int, count: int, measure: str) -> np.ndarray:
    """``count`` frames ``wave[i*hop : i*hop+window]`` as a read-only [count, window] view: the
    front-end's framing without centring or padding (``tail="drop"``), as Loizou's loops and
    pysepm frame; ``count`` leaves out the frames they leave out."""
    if count < 1:
        raise ValueError(f"{measure} needs at least {window + hop} samples ({window}-sample frames, hop {hop}); "
                         f"the signals have {wave.size}")
    return framed_signal(wave, window, hop, center=False, tail="drop", count=count)


def loizou_frame_count(length: int, window: int, hop: int) -> int:
    """Frames Loizou's loops visit: ``floor(len/hop - window/hop)`` (pysepm drops the same last
    frame from its strided view)."""
    return int(length / hop - window / hop)
