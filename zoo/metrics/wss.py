"""Weighted spectral slope distance (Klatt 1982), as in Loizou's ``comp_wss.m`` and pysepm's ``wss``."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..frontends.stft import frame_spectra
from ._signals import EPS, as_pair, check_sample_rate, frame_geometry, frames, loizou_frame_count, loizou_hann

# Centre frequencies and bandwidths (Hz) of the 25 critical-band filters of Loizou's code.
CENTRE_HZ = np.array([50.0, 120.0, 190.0, 260.0, 330.0, 400.0, 470.0, 540.0, 617.372, 703.378, 798.717,
                      904.128, 1020.38, 1148.30, 1288.72, 1442.54, 1610.70, 1794.16, 1993.93, 2211.08,
                      2446.71, 2701.97, 2978.04, 3276.17, 3597.63])
BANDWIDTH_HZ = np.array([70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 77.3724, 86.0056, 95.3398, 105.411,
                         116.256, 127.914, 140.423, 153.823, 168.154, 183.457, 199.776, 217.153, 235.631,
                         255.255, 276.072, 298.126, 321.465, 346.136])
K_MAX = 20.0  # Klatt (1982), p. 1280: weight of the distance from the frame's largest band energy
K_LOCMAX = 1.0  # Klatt (1982), p. 1280: weight of the distance from the nearest spectral peak
FLOOR_DB = -100.0
KEPT_FRACTION = 0.95


def weighted_spectral_slope(preds, target, sample_rate: int, frame_seconds: float = 0.03,
                            overlap: float = 0.75) -> float:
    """Mean WSS distance of ``preds`` (enhanced) from ``target`` (clean reference); 0 is identical.

    Klatt, "Prediction of perceived phonetic distance from critical-band spectra", ICASSP 1982,
    pp. 1278-1281, as used by Hu & Loizou, IEEE TASLP 16(1), 2008, sec. II-C::

        d_WSS(m) = sum_j W(j,m) (S_c(j,m) - S_p(j,m))^2 / sum_j W(j,m)

    where ``S(j,m) = E(j+1,m) - E(j,m)`` is the slope between neighbouring critical bands of the
    frame's band energies ``E`` in dB (25 Gaussian-shaped bands up to 3.6 kHz on the power
    spectrum of a Hann-windowed 30 ms frame, 75 % overlap, floored at -100 dB), and the weight
    ``W = (W_c + W_p)/2`` with, for each signal, ``K_max/(K_max + E_max - E(j)) *
    K_locmax/(K_locmax + E_locpeak(j) - E(j))`` (``K_max`` = 20, ``K_locmax`` = 1). The result is the
    mean of the lowest 95 % of frame distances. Eps is added to both signals first, so silent
    frames sit at the -100 dB floor and give finite distances. Band peaks are searched exactly as
    Loizou's code does (including its choice of neighbour at a peak), so numbers match pysepm.
    """
    enhanced, clean = as_pair(preds, target)
    sample_rate = check_sample_rate(sample_rate)
    window, hop = frame_geometry(sample_rate, frame_seconds, overlap)
    fft_size = int(2 ** np.ceil(np.log2(2 * window)))
    filters = critical_band_filters(sample_rate, fft_size)
    count = loizou_frame_count(clean.size, window, hop)
    hann = loizou_hann(window)
    log_energy = []
    for signal in (clean, enhanced):
        spectra = frame_spectra(frames(signal + EPS, window, hop, count, "WSS"), hann, fft_size)
        power = np.abs(spectra[:, : fft_size // 2]) ** 2  # no Nyquist bin
        with np.errstate(divide="ignore"):
            energy = 10 * np.log10(filters @ power.T)  # [25, F]
        log_energy.append(np.maximum(energy, FLOOR_DB))
    weights, slopes = [], []
    for energy in log_energy:
        slope = np.diff(energy, axis=0)  # [24, F]
        peak = nearest_peaks(slope, energy)
        below_max = energy.max(axis=0) - energy[:-1]
        weights.append(K_MAX / (K_MAX + below_max) * K_LOCMAX / (K_LOCMAX + peak - energy[:-1]))
        slopes.append(slope)
    weight = (weights[0] + weights[1]) / 2
    distortion = np.sum(weight * (slopes[0] - slopes[1]) ** 2, axis=0) / np.sum(weight, axis=0)
    kept = np.sort(distortion)[: int(round(len(distortion) * KEPT_FRACTION))]
    return float(np.mean(kept))


def nearest_peaks(slope: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """For each band ``j``: the band energy of the peak that band climbs to, as Loizou's loop finds it.

    Rising slope at ``j``: walk right while the slope rises and take ``E(n-1)``, ``n`` being the
    first band at or after ``j`` whose slope does not rise (the last band if none); otherwise walk
    left while it does not rise and take ``E(n+1)``, ``n`` being the last rising band at or before
    ``j`` (or -1). ``slope``: [B-1, F], ``energy``: [B, F].
    """
    bands = slope.shape[0]
    index = np.arange(bands)[:, None]
    not_rising_at = np.where(slope <= 0, index, bands)
    first_not_rising = np.minimum.accumulate(not_rising_at[::-1], axis=0)[::-1]
    rising_at = np.where(slope > 0, index, -1)
    last_rising = np.maximum.accumulate(rising_at, axis=0)
    peak_band = np.where(slope > 0, first_not_rising - 1, last_rising + 1)
    return np.take_along_axis(energy, peak_band, axis=0)


@lru_cache(maxsize=8)
def critical_band_filters(sample_rate: int, fft_size: int) -> np.ndarray:
    """[25, fft_size/2] Gaussian-shaped critical-band filters of Loizou's code, cut at -30 dB."""
    half = fft_size // 2
    nyquist = sample_rate / 2
    bins = np.arange(half)
    min_factor = np.exp(-30.0 / (2.0 * 2.303))  # -30 dB point of the filter
    filters = np.zeros((len(CENTRE_HZ), half))
    for band, (centre, width) in enumerate(zip(CENTRE_HZ, BANDWIDTH_HZ)):
        centre_bin = np.floor(centre / nyquist * half)
        width_bins = width / nyquist * half
        norm = np.log(BANDWIDTH_HZ[0]) - np.log(width)
        filters[band] = np.exp(-11 * ((bins - centre_bin) / width_bins) ** 2 + norm)
        filters[band] *= filters[band] > min_factor
    filters.setflags(write=False)
    return filters
