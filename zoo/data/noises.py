"""Generated noises, and the speech level they are mixed against.

Noise recordings are scarce in ../shared/data (about 11 minutes), so the mixing DataModules can
add noises made on the fly. A noise list entry ``"generated:NAME"`` selects one of
:data:`GENERATED_NOISES`:

- ``white``: Gaussian white noise;
- ``pink`` / ``brown``: Gaussian noise with power falling as 1/f and 1/f^2 (white noise shaped
  in the frequency domain, flat below :data:`MIN_FREQUENCY_HZ` so that it has no huge DC drift);
- ``speech-shaped``: as in the DeepSHAP paper (explaining-speech-enhancement-deepshap.txt,
  sec. 5.1): "a different speech-like filter is computed for every noisy utterance by randomly
  drawing 6 clean speech utterances and averaging their STFT magnitude spectra across all time
  frames"; white noise is filtered by that average magnitude spectrum (STFT as the paper's: 50 ms
  Hann windows, 25 ms shift);
- ``babble``: the sum of ``talkers`` random utterances of speakers held out of training
  (:data:`BABBLE_SPEECH`, 20 LibriSpeech train-clean-100 speakers that the mixing DataModules
  remove from their training speech whenever babble is used), each normalised to the same
  active speech level first.

Every generator takes the number of samples and a ``numpy.random.Generator`` (or a seed) and
returns float32 noise at unit RMS; the mixing code sets its level from the SNR.

:func:`active_level` is the speech level an SNR is defined against: ITU-T P.56 method B (the
active speech level), also used here to level-normalise babble talkers.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from scipy.ndimage import maximum_filter1d
from scipy.signal import lfilter

from ..frontends.stft import stft

GENERATED_PREFIX = "generated:"
GENERATED_NOISES = ("white", "pink", "brown", "speech-shaped", "babble")

#: pink and brown noise are flat below this frequency (an ideal 1/f^2 has infinite power at DC)
MIN_FREQUENCY_HZ = 20.0
#: tilt_spectrum is flat below this: a tilt of -6 dB/octave lifts 100 Hz by 20 dB, 20 Hz would get 34
TILT_FLOOR_HZ = 100.0

#: speech-shaped noise: utterances averaged per filter, and the paper's STFT (seconds)
SSN_UTTERANCES = 6
SSN_WINDOW_SECONDS = 0.050
SSN_HOP_SECONDS = 0.025

#: babble: talkers summed per clip
BABBLE_TALKERS = 6

#: Speakers whose speech makes babble, relative to the data root. 20 of the 251 LibriSpeech
#: train-clean-100 speakers (every 12th in numeric order, about 4.5 minutes); the mixing
#: DataModules drop their files from the training speech whenever a noise list holds
#: "generated:babble", so no training speaker is ever also a babble talker, and validation and
#: test speakers (LibriSpeech test-other, zoo.data.splits) never are.
BABBLE_SPEECH = [f"speech/librispeech-train-clean-100/{speaker}" for speaker in (
    "60", "200", "307", "446", "909", "1263", "1737", "2136", "2764", "3235",
    "3723", "4137", "4640", "5192", "5703", "6181", "6818", "7226", "7780", "8226")]


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _unit_rms(wave: np.ndarray) -> np.ndarray:
    rms = math.sqrt(float(np.mean(np.square(wave, dtype=np.float64))))
    return (wave / rms if rms > 0 else wave).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Stationary noises


def white_noise(frames: int, rng=None) -> np.ndarray:
    """Gaussian white noise, float32 [frames], unit RMS."""
    return _unit_rms(_rng(rng).standard_normal(frames))


def colored_noise(frames: int, exponent: float, rng=None, sample_rate: int = 16000,
                  min_frequency: float = MIN_FREQUENCY_HZ) -> np.ndarray:
    """Gaussian noise whose power spectral density falls as ``1 / f**exponent`` (0 white, 1 pink,
    2 brown), flat below ``min_frequency``; float32 [frames], unit RMS.

    White noise shaped in the frequency domain (one FFT of the whole clip: exact slope, no
    filter transient), so the clip is one period of a circular process.
    """
    spectrum = np.fft.rfft(_rng(rng).standard_normal(frames))
    frequencies = np.fft.rfftfreq(frames, 1.0 / sample_rate)
    spectrum *= np.maximum(frequencies, min_frequency) ** (-exponent / 2.0)
    spectrum[0] = 0.0  # no DC offset
    return _unit_rms(np.fft.irfft(spectrum, n=frames))


def pink_noise(frames: int, rng=None, sample_rate: int = 16000) -> np.ndarray:
    """Pink noise: power falls as 1/f (-3 dB per octave). float32 [frames], unit RMS."""
    return colored_noise(frames, 1.0, rng, sample_rate)


def brown_noise(frames: int, rng=None, sample_rate: int = 16000) -> np.ndarray:
    """Brown (red) noise: power falls as 1/f^2 (-6 dB per octave). float32 [frames], unit RMS."""
    return colored_noise(frames, 2.0, rng, sample_rate)


def tilt_spectrum(wave: np.ndarray, db_per_octave: float, sample_rate: int = 16000, pivot_hz: float = 1000.0,
                  min_frequency: float = TILT_FLOOR_HZ) -> np.ndarray:
    """``wave`` with its power spectrum tilted by ``db_per_octave`` about ``pivot_hz`` (negative:
    less energy above the pivot, more below; -3 turns white noise pink), flat below
    ``min_frequency``; DC removed. float32, same length; the level is not renormalised (mixing
    scales the noise to its SNR afterwards).

    Why: white, pink and ICRA noise give the shared-data training mixtures a high band that is
    mostly noise (measured by ``benchmarks/diagnostics/band_errors.py``: median band SNR 1.1-2.6 dB in 2-6 kHz
    and -1.1 dB in 6-8 kHz, where the VoiceBank-DEMAND subset has 10.5-12.5 and 4.9 dB), and a
    network trained on them learns to remove the speech there. A random tilt per mixture widens the range of noise spectra it sees.
    """
    wave = np.asarray(wave, dtype=np.float64)
    if db_per_octave == 0 or not wave.size:
        return wave.astype(np.float32)
    spectrum = np.fft.rfft(wave)
    frequencies = np.maximum(np.fft.rfftfreq(wave.shape[-1], 1.0 / sample_rate), min_frequency)
    spectrum *= 10.0 ** (db_per_octave * np.log2(frequencies / pivot_hz) / 20.0)
    spectrum[..., 0] = 0.0
    return np.fft.irfft(spectrum, n=wave.shape[-1]).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Speech-shaped noise (DeepSHAP paper, sec. 5.1)


def stft_window(sample_rate: int) -> tuple[int, int]:
    """The DeepSHAP paper's STFT at ``sample_rate``: (window = 50 ms, hop = 25 ms) in samples."""
    return int(round(SSN_WINDOW_SECONDS * sample_rate)), int(round(SSN_HOP_SECONDS * sample_rate))


def magnitude_sum(wave: np.ndarray, sample_rate: int = 16000) -> tuple[np.ndarray, int]:
    """Sum over all STFT frames of one utterance's magnitude spectrum, and the number of frames.

    Kept apart from the average so that callers can cache it per utterance: the average over
    several utterances' frames is ``sum(sums) / sum(counts)``.
    """
    window, hop = stft_window(sample_rate)
    wave = np.asarray(wave, dtype=np.float32)
    if wave.shape[-1] < window:  # one frame of what there is
        wave = np.pad(wave, (0, window - wave.shape[-1]))
    # Periodic Hann frames from the first sample, the tail that fills no frame left out (the
    # front-end's tail="drop"). NumPy float32 in: scipy.fft keeps float32 (numpy.fft computes in
    # float64), 5x faster, same sums to 1e-5.
    magnitudes = np.abs(stft(wave, window, hop, window="hann", periodic=True, center=False, tail="drop"))
    return magnitudes.sum(axis=0).astype(np.float64), magnitudes.shape[0]


def average_magnitude_spectrum(utterances: Sequence[np.ndarray], sample_rate: int = 16000) -> np.ndarray:
    """The STFT magnitude spectrum averaged across all time frames of all ``utterances``."""
    sums = [magnitude_sum(u, sample_rate) for u in utterances]
    return sum(s for s, _ in sums) / sum(n for _, n in sums)


def filter_white_noise(frames: int, magnitude: np.ndarray, rng=None, sample_rate: int = 16000) -> np.ndarray:
    """White Gaussian noise filtered by the (zero-phase) magnitude response ``magnitude``, given
    on the ``len(magnitude)`` bins of an rfft spanning 0 .. sample_rate / 2 (linear
    interpolation between them). float32 [frames], unit RMS."""
    spectrum = np.fft.rfft(_rng(rng).standard_normal(frames))
    bins = np.linspace(0.0, sample_rate / 2.0, len(magnitude))
    spectrum *= np.interp(np.fft.rfftfreq(frames, 1.0 / sample_rate), bins, magnitude)
    return _unit_rms(np.fft.irfft(spectrum, n=frames))


def speech_shaped_noise(frames: int, utterances, rng=None, count: int = SSN_UTTERANCES,
                        sample_rate: int = 16000, *, spectrum_of=None) -> np.ndarray:
    """Speech-shaped noise exactly as the DeepSHAP paper makes it: draw ``count`` (6) random clean
    utterances, average their STFT magnitude spectra across all time frames, filter white noise
    by that average. float32 [frames], unit RMS.

    ``utterances``: 1-D arrays at ``sample_rate`` or audio file paths. ``spectrum_of(i)``, if
    given, returns utterance i's :func:`magnitude_sum` (a cache: the DataModules compute it once
    per file instead of once per clip).
    """
    rng = _rng(rng)
    chosen = rng.choice(len(utterances), size=min(count, len(utterances)), replace=False)
    if spectrum_of is None:
        def spectrum_of(i):
            return magnitude_sum(_as_wave(utterances[i], sample_rate), sample_rate)
    sums = [spectrum_of(int(i)) for i in chosen]
    average = sum(s for s, _ in sums) / sum(n for _, n in sums)
    return filter_white_noise(frames, average, rng, sample_rate)


# ---------------------------------------------------------------------------------------------
# Babble


def babble_noise(frames: int, utterances, rng=None, talkers: int = BABBLE_TALKERS, sample_rate: int = 16000,
                 return_sources: bool = False, *, normalised_wave_of=None):
    """Babble: the sum of ``talkers`` different random utterances, each normalised to the same
    active speech level (:func:`active_level` over the whole utterance) and cropped at a random
    offset (looped when shorter than ``frames``). float32 [frames], unit RMS.

    ``utterances``: 1-D arrays at ``sample_rate`` or audio file paths, of speakers that the
    model never trains on (:data:`BABBLE_SPEECH`). ``normalised_wave_of(i)``, if given, returns
    utterance i already level-normalised (a cache). With ``return_sources=True`` also returns
    ``[(utterance index, offset), ...]``: which utterances made the clip and where each starts.
    """
    rng = _rng(rng)
    chosen = rng.choice(len(utterances), size=min(talkers, len(utterances)), replace=False)
    if normalised_wave_of is None:
        def normalised_wave_of(i):
            return level_normalised(_as_wave(utterances[i], sample_rate), sample_rate)
    total = np.zeros(frames, dtype=np.float64)
    sources = []
    for index in chosen:
        wave = normalised_wave_of(int(index))
        offset = int(rng.integers(0, len(wave)))
        total += loop_crop(wave, offset, frames)
        sources.append((int(index), offset))
    babble = _unit_rms(total)
    return (babble, sources) if return_sources else babble


def level_normalised(wave: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """``wave`` scaled to an active speech level of 1 (mean square over its active samples)."""
    level, _ = active_level(wave, sample_rate)
    return (wave / math.sqrt(level) if level > 0 else wave).astype(np.float32)


def loop_crop(wave: np.ndarray, offset: int, frames: int) -> np.ndarray:
    """``frames`` samples of ``wave`` from ``offset``, wrapping around its end as often as needed."""
    index = (offset + np.arange(frames)) % len(wave)
    return wave[index]


def _as_wave(utterance, sample_rate: int) -> np.ndarray:
    if isinstance(utterance, (str, Path)):
        from ..audio import read_audio, resample
        wave, rate = read_audio(utterance)
        return resample(wave.mean(dim=0), rate, sample_rate).numpy()
    if isinstance(utterance, torch.Tensor):
        return utterance.detach().cpu().numpy()
    return np.asarray(utterance, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# Active speech level: ITU-T P.56 method B


P56_TIME_CONSTANT = 0.03  # s, envelope smoothing
P56_HANGOVER = 0.2  # s
P56_MARGIN_DB = 15.9
P56_THRESHOLDS = 2.0 ** np.arange(-15, 0)  # 2^-15 .. 2^-1 of the clip's peak, 6 dB apart


def active_level(wave, sample_rate: int = 16000) -> tuple[float, float]:
    """Active speech level of ``wave`` by ITU-T P.56 method B: ``(mean square over the active
    samples, activity factor)``. The level of a signal that is speech 40 % of the time and
    silence otherwise is the level of its speech, not 4 dB below it.

    The method of the reference implementation (``asl_P56``, as in Loizou's toolbox and
    voicebox ``activlev``): the rectified signal is smoothed twice by a first-order filter
    (time constant 30 ms); for each threshold c_j a sample is active if the envelope exceeded c_j
    within the last 200 ms (hangover); the active level A_j is the signal's energy over the
    active samples; the answer is where A_j / c_j^2 crosses 15.9 dB, interpolated between
    thresholds (the reference bisects to within 0.5 dB; interpolation gives the point it
    converges to). Thresholds are relative to the clip's peak, so the result scales exactly with
    the signal. Returns ``(0.0, 0.0)`` for digital silence; where P.56 has no answer (a signal
    whose envelope never falls 15.9 dB below its level, e.g. a constant) the plain mean square
    with activity 1.
    """
    x = np.asarray(wave, dtype=np.float64).reshape(-1)
    n = x.shape[0]
    peak = float(np.max(np.abs(x))) if n else 0.0
    if peak == 0.0:
        return 0.0, 0.0
    x = x / peak
    energy = float(np.einsum("i,i->", x, x))  # not np.dot: BLAS threads cost milliseconds here
    g = math.exp(-1.0 / (sample_rate * P56_TIME_CONSTANT))
    envelope = lfilter([1.0 - g], [1.0, -g], lfilter([1.0 - g], [1.0, -g], np.abs(x)))
    hangover = math.ceil(sample_rate * P56_HANGOVER)
    # A sample is active for threshold c if the envelope reached c within the last `hangover`
    # samples: the envelope's trailing maximum over hangover + 1 samples is >= c. One O(n)
    # running maximum then serves every threshold.
    recent_peak = maximum_filter1d(envelope, size=hangover + 1, origin=hangover - (hangover + 1) // 2,
                                   mode="constant", cval=0.0)
    counts = np.array([np.count_nonzero(recent_peak >= c) for c in P56_THRESHOLDS], dtype=np.float64)
    with np.errstate(divide="ignore"):
        level_db = np.where(counts > 0, 10 * np.log10(energy / np.maximum(counts, 1)), np.nan)
    threshold_db = 20 * np.log10(P56_THRESHOLDS)
    delta = level_db - threshold_db
    if not delta[0] > P56_MARGIN_DB:  # even the lowest threshold is within the margin
        return energy / n * peak**2, 1.0
    for j in range(1, len(P56_THRESHOLDS)):
        if counts[j] > 0 and delta[j] <= P56_MARGIN_DB:
            t = (delta[j - 1] - P56_MARGIN_DB) / (delta[j - 1] - delta[j])
            level = 10 ** ((level_db[j - 1] + t * (level_db[j] - level_db[j - 1])) / 10)
            return level * peak**2, min(1.0, energy / n / level)
    return energy / n * peak**2, 1.0


__all__ = ["BABBLE_SPEECH", "BABBLE_TALKERS", "GENERATED_NOISES", "GENERATED_PREFIX", "active_level",
           "average_magnitude_spectrum", "babble_noise", "brown_noise", "colored_noise", "filter_white_noise",
           "level_normalised", "loop_crop", "magnitude_sum", "pink_noise", "speech_shaped_noise", "tilt_spectrum", "white_noise"]
