"""The spectral front-end, written once: windows, framing, STFT and inverse STFT, magnitude and
phase, noisy-phase resynthesis.

Every part of the zoo that cuts a signal into frames does it here, each with its own numbers:
the masking models (:class:`zoo.frontends.masking.MaskingDenoiser`), the Wiener filter, the
spectrogram plots, the speech-shaped noise generator and the frame-based quality measures
(segmental SNR, LLR, WSS). The conventions:

Frames
    A frame is ``frame_length`` consecutive samples (the window length, ``win_length``, which
    defaults to ``n_fft``). A signal ``[..., T]`` gives frames ``[..., F, frame_length]`` and
    spectra ``[..., F, n_fft // 2 + 1]``: frames before bins (time-major, as frame-wise networks
    and the measures read them; ``torch.stft`` puts the bins first). Batched over any leading
    dimensions; torch tensors (float32 or float64, any device) and, for :func:`frames` and
    :func:`stft`, NumPy arrays, which the measures and the noise generator compute on.
Positions
    Frame ``m`` starts at sample ``m * hop - left``: with ``center=True`` it is centred on sample
    ``m * hop`` (``left = frame_length // 2``), otherwise it starts at sample ``m * hop``
    (``left = 0``). Samples before 0 and after ``T - 1`` are padding: zeros
    (``pad_mode="constant"``) or the signal mirrored about its end samples (``"reflect"``,
    ``torch.stft``'s default, used by the plots only).
How many frames (``tail``)
    ``"pad"``: frames at every multiple of ``hop`` from ``m = 0`` to the last frame that starts
    before the signal ends, ``ceil((T + left) / hop)`` of them, zero-padded on the right as far
    as the last one needs. Every sample lies in a frame; with ``center=True`` and ``hop <=
    frame_length / 2`` every sample also lies between two frame centres, so the synthesis below
    never divides by a vanishing window sum. The analysis-synthesis default.
    ``"drop"``: only the frames that fit between the same padding on both sides,
    ``(T + 2 left - frame_length) // hop + 1`` (``torch.stft``'s count; without centring the last
    ``(T - frame_length) % hop`` samples are in no frame). For measuring only.
    ``count=N`` keeps the first N of them (Loizou's measures leave out the last frame).
Spectra
    Each frame is multiplied by the window and, when ``n_fft > frame_length``, zero-padded *at
    its end* to ``n_fft`` (MATLAB's ``fft(x, nfft)``, as in Loizou's code and the Wiener filter):
    one-sided spectra of ``n_fft // 2 + 1`` bins.
Synthesis
    :func:`istft`: the inverse FFT of each frame, cut to ``frame_length``, multiplied by the
    window, overlap-added, and divided by the overlap-added squared window (window-sum
    normalisation, the least-squares inverse of Griffin & Lim 1984, as ``torch.istft``):
    ``x[n] = sum_m w[n - s_m] y_m[n - s_m] / sum_m w[n - s_m]^2``. It gives a signal back from its
    own STFT exactly (to float precision) for any hop, window and length where that sum does not
    vanish; a Hann window without centring vanishes at sample 0 and is refused with a message.
Noisy-phase resynthesis
    :func:`resynthesize`: an estimated magnitude with the noisy signal's phase, through
    :func:`istft`, Eq. 29 of the partitioned-autoencoder thesis
    (partitioned-autoencoder-thesis.txt, "x[n] = F^-1{|X^[k]| e^{j angle Y[k]}}", then overlap-add).

Windows (:func:`window`): Hann and Hamming, periodic (DFT-even: the ``hop = frame_length / 2``
Hann frames sum to a constant) or symmetric (MATLAB's ``hamming(N)``), or any window's samples.

Importing this module costs torch only (SciPy is imported on the first NumPy transform); the data
layer uses it without pulling in Lightning or any model.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

WINDOWS = ("hann", "hamming", "rectangular")
PAD_MODES = ("constant", "reflect")
TAILS = ("pad", "drop")
#: a window sum below this (relative to its largest value) cannot be divided by: istft refuses it
MIN_WINDOW_SUM = 1e-10


# ---------------------------------------------------------------------------------------------
# Windows


def window(name: str = "hann", length: int = 1024, *, periodic: bool = True, dtype=torch.float32,
           device=None) -> torch.Tensor:
    """The ``name`` window of ``length`` samples: ``"hann"`` ``0.5 - 0.5 cos(2 pi n / N)``,
    ``"hamming"`` ``0.54 - 0.46 cos(2 pi n / N)`` or ``"rectangular"``, with ``N = length``
    (``periodic=True``, the DFT-even window of spectral analysis) or ``N = length - 1``
    (``periodic=False``, symmetric: MATLAB's ``hann``/``hamming``). Computed by torch in ``dtype``
    (``torch.hann_window``'s values, bit for bit: what ``torch.stft`` users get); NumPy frames get
    the float64 window rounded to their dtype (``np.hanning``'s values)."""
    if name not in WINDOWS:
        raise ValueError(f"unknown window {name!r}; use one of {', '.join(WINDOWS)} (or pass the window's samples)")
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise ValueError(f"a window needs a positive whole number of samples, got {length!r}")
    if name == "hann":
        return torch.hann_window(int(length), periodic=periodic, dtype=dtype, device=device)
    if name == "hamming":
        return torch.hamming_window(int(length), periodic=periodic, dtype=dtype, device=device)
    return torch.ones(int(length), dtype=dtype, device=device)


def _window_like(spec, length: int, periodic: bool, like):
    """``spec`` (a window name, or the window's samples) as a window of ``length`` samples with
    the dtype and container of ``like``."""
    if isinstance(spec, str):
        if isinstance(like, torch.Tensor):
            return window(spec, length, periodic=periodic, dtype=like.real.dtype if like.is_complex() else like.dtype,
                          device=like.device)
        values = window(spec, length, periodic=periodic, dtype=torch.float64)
    else:
        values = spec if isinstance(spec, torch.Tensor) else torch.from_numpy(np.asarray(spec, dtype=np.float64))
        if values.shape != (length,):
            raise ValueError(f"the window has shape {tuple(values.shape)}; frames of {length} samples need a "
                             f"window of {length} samples")
    if isinstance(like, torch.Tensor):
        real = like.real.dtype if like.is_complex() else like.dtype
        return values.to(dtype=real, device=like.device)
    values = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values
    return values.astype(like.real.dtype if np.iscomplexobj(like) else like.dtype)


# ---------------------------------------------------------------------------------------------
# Framing


def _check_framing(frame_length: int, hop: int, tail: str, pad_mode: str = "constant") -> None:
    for name, value in (("frame_length", frame_length), ("hop", hop)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive whole number of samples, got {value!r}")
    if tail not in TAILS:
        raise ValueError(f"tail must be one of {', '.join(map(repr, TAILS))}, got {tail!r}")
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {', '.join(map(repr, PAD_MODES))}, got {pad_mode!r}")


def frame_padding(length: int, frame_length: int, hop: int, *, center: bool = True,
                  tail: str = "pad") -> tuple[int, int]:
    """Samples of padding ``(left, right)`` that a signal of ``length`` samples is framed with
    (see the module docstring: ``left`` is ``frame_length // 2`` when centred, else 0)."""
    _check_framing(frame_length, hop, tail)
    left = frame_length // 2 if center else 0
    if tail == "drop" or length <= 0:
        return left, left
    count = -(-(length + left) // hop)  # frames m >= 0 that start before the signal's end
    return left, (count - 1) * hop + frame_length - left - length


def frame_count(length: int, frame_length: int, hop: int, *, center: bool = True, tail: str = "pad") -> int:
    """How many frames a signal of ``length`` samples has (0 for an empty signal)."""
    if length <= 0:
        _check_framing(frame_length, hop, tail)
        return 0
    left, right = frame_padding(length, frame_length, hop, center=center, tail=tail)
    return max(0, (left + length + right - frame_length) // hop + 1)


def frames(x, frame_length: int, hop: int, *, center: bool = True, pad_mode: str = "constant", tail: str = "pad",
           count: int | None = None):
    """The frames of ``x`` (``[..., T]``, torch tensor or NumPy array): ``[..., F, frame_length]``,
    frame ``m`` holding samples ``m * hop - left`` onwards (module docstring). A view of ``x``
    when no padding is needed (read-only for NumPy arrays). ``count``: keep the first ``count``
    frames only."""
    _check_framing(frame_length, hop, tail, pad_mode)
    length = x.shape[-1]
    available = frame_count(length, frame_length, hop, center=center, tail=tail)
    if count is None:
        count = available
    elif not 0 <= count <= available:
        raise ValueError(f"asked for {count} frames of {frame_length} samples (hop {hop}); a signal of {length} "
                         f"samples has {available}")
    left, right = frame_padding(length, frame_length, hop, center=center, tail=tail) if length else (0, 0)
    if pad_mode == "reflect" and (left >= length or right >= length) and (left or right):
        raise ValueError(f"reflect padding of {max(left, right)} samples needs a signal longer than that; this one "
                         f"has {length} samples (use pad_mode='constant' or a shorter frame)")
    if isinstance(x, torch.Tensor):
        if left or right:
            batch = x.shape[:-1]
            flat = x.reshape(-1, 1, length)
            if pad_mode == "reflect":
                flat = torch.nn.functional.pad(flat, (left, right), mode="reflect")
            else:
                flat = torch.nn.functional.pad(flat, (left, right))
            x = flat.reshape(*batch, flat.shape[-1])
        if x.shape[-1] < frame_length:
            return x.new_zeros(*x.shape[:-1], 0, frame_length)
        return x.unfold(-1, frame_length, hop)[..., :count, :]
    x = np.asarray(x)
    if left or right:
        x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(left, right)], mode=pad_mode)
    if x.shape[-1] < frame_length:
        return np.zeros(x.shape[:-1] + (0, frame_length), dtype=x.dtype)
    view = np.lib.stride_tricks.sliding_window_view(x, frame_length, axis=-1)
    return view[..., ::hop, :][..., :count, :]


def overlap_add(framed: torch.Tensor, hop: int) -> torch.Tensor:
    """Overlap-add of frames ``[..., F, L]`` placed ``hop`` samples apart: ``[..., (F - 1) * hop + L]``
    (plain sums: no window, no normalisation)."""
    *batch, count, length = framed.shape
    if isinstance(hop, bool) or not isinstance(hop, (int, np.integer)) or not 1 <= hop <= length:
        raise ValueError(f"overlap-add needs a hop of 1 to {length} samples (the frame length), got {hop!r}")
    if count == 0:
        return framed.new_zeros(*batch, 0)
    columns = framed.reshape(-1, count, length).transpose(1, 2)  # [N, L, F]: fold's column layout
    out = torch.nn.functional.fold(columns, output_size=(1, (count - 1) * hop + length), kernel_size=(1, length),
                                   stride=(1, hop))
    return out.reshape(*batch, out.shape[-1])


class OverlapAddStream:
    """Overlap-add of frames that arrive a few at a time (a recursive filter's output frames).

    ``push(frames)`` (``[..., F, L]``) returns the ``F * hop`` samples that no later frame
    touches; the last ``L - hop`` samples wait for the next push. :func:`overlap_add` of all the
    frames at once is the concatenation of the pushes and of :attr:`pending`.
    """

    def __init__(self, frame_length: int, hop: int):
        _check_framing(frame_length, hop, "drop")
        if hop > frame_length:
            raise ValueError(f"overlap-add needs hop <= frame_length, got hop {hop} and frames of {frame_length}")
        self.frame_length, self.hop = frame_length, hop
        self.pending: torch.Tensor | None = None  # [..., L - hop]: summed, not yet complete

    def push(self, framed: torch.Tensor) -> torch.Tensor:
        count = framed.shape[-2]
        if count == 0:
            return framed.new_zeros(*framed.shape[:-2], 0)
        summed = overlap_add(framed, self.hop)
        if self.pending is not None:
            overlap = self.pending.shape[-1]
            summed = torch.cat([summed[..., :overlap] + self.pending, summed[..., overlap:]], dim=-1)
        self.pending = summed[..., count * self.hop:]
        return summed[..., : count * self.hop]


# ---------------------------------------------------------------------------------------------
# STFT and inverse


def frame_spectra(framed, window_values, n_fft: int):
    """One-sided spectra ``[..., F, n_fft // 2 + 1]`` of frames ``[..., F, L]`` times ``window_values``
    (``[L]``), each zero-padded at its end to ``n_fft``. Torch in, torch out; NumPy in, NumPy out
    (``scipy.fft``, which keeps float32 in float32)."""
    if isinstance(framed, torch.Tensor):
        return torch.fft.rfft(framed * window_values, n=n_fft)
    import scipy.fft

    return scipy.fft.rfft(framed * window_values, n=n_fft, axis=-1)


def _frame_length(n_fft: int, win_length: int | None) -> int:
    length = n_fft if win_length is None else win_length
    if isinstance(n_fft, bool) or not isinstance(n_fft, (int, np.integer)) or n_fft < 1:
        raise ValueError(f"n_fft must be a positive whole number, got {n_fft!r}")
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or not 1 <= length <= n_fft:
        raise ValueError(f"win_length must be 1 to n_fft ({n_fft}) samples, got {win_length!r}")
    return int(length)


def stft(x, n_fft: int, hop: int, *, win_length: int | None = None, window="hann", periodic: bool = True,
         center: bool = True, pad_mode: str = "constant", tail: str = "pad", count: int | None = None):
    """Short-time Fourier transform of ``x`` ``[..., T]``: complex ``[..., F, n_fft // 2 + 1]``.

    Frames of ``win_length`` (default ``n_fft``) samples, ``hop`` apart, placed and counted as the
    module docstring says; ``window``: a name (:func:`window`, with ``periodic``) or the window's
    samples. Torch tensors give torch tensors (differentiable); NumPy arrays give NumPy arrays."""
    length = _frame_length(n_fft, win_length)
    framed = frames(x, length, hop, center=center, pad_mode=pad_mode, tail=tail, count=count)
    return frame_spectra(framed, _window_like(window, length, periodic, framed), n_fft)


def istft(spectrum: torch.Tensor, n_fft: int, hop: int, *, length: int, win_length: int | None = None,
          window="hann", periodic: bool = True, center: bool = True, tail: str = "pad") -> torch.Tensor:
    """Inverse of :func:`stft` with the same parameters: ``[..., F, n_fft // 2 + 1]`` -> ``[..., length]``
    by weighted overlap-add with window-sum normalisation (module docstring). ``length`` is the
    signal's length in samples (the frames' padding does not record it)."""
    frame_length = _frame_length(n_fft, win_length)
    if not isinstance(spectrum, torch.Tensor) or not spectrum.is_complex():
        raise ValueError("istft takes a complex torch tensor [..., frames, n_fft // 2 + 1] (what stft returns); "
                         "for a magnitude and a phase use resynthesize")
    expected = frame_count(length, frame_length, hop, center=center, tail=tail)
    if spectrum.shape[-2:] != (expected, n_fft // 2 + 1):
        raise ValueError(f"the spectrum has shape {tuple(spectrum.shape)}; a signal of {length} samples framed with "
                         f"n_fft={n_fft}, hop={hop}, win_length={frame_length}, center={center}, tail={tail!r} has "
                         f"[..., {expected}, {n_fft // 2 + 1}]: pass the length stft was given, and the same framing")
    if hop > frame_length:
        raise ValueError(f"synthesis needs hop <= win_length (frames that overlap or touch), got hop {hop} and "
                         f"frames of {frame_length}")
    if expected == 0:
        return spectrum.real.new_zeros(*spectrum.shape[:-2], 0)
    left, _ = frame_padding(length, frame_length, hop, center=center, tail=tail)
    weights = _window_like(window, frame_length, periodic, spectrum)
    framed = torch.fft.irfft(spectrum, n=n_fft)[..., :frame_length] * weights
    summed = overlap_add(framed, hop)[..., left:left + length]
    envelope = overlap_add((weights * weights).expand(expected, frame_length), hop)[left:left + length]
    vanishing = envelope <= MIN_WINDOW_SUM * envelope.max()
    if bool(vanishing.any()):
        first = int(vanishing.nonzero()[0])
        raise ValueError(f"the squared window sums to (nearly) zero at {int(vanishing.sum())} of the {length} samples "
                         f"(first at sample {first}): they cannot be resynthesised; frame with center=True, or use "
                         "a window that is not zero at its ends")
    return summed / envelope


def magnitude_phase(spectrum):
    """``(|X|, angle X)`` of a complex spectrum (torch or NumPy): the noisy magnitude a model
    sees and the noisy phase :func:`resynthesize` puts back."""
    if isinstance(spectrum, torch.Tensor):
        return spectrum.abs(), spectrum.angle()
    return np.abs(spectrum), np.angle(spectrum)


def resynthesize(magnitude: torch.Tensor, phase: torch.Tensor, n_fft: int, hop: int, *, length: int,
                 win_length: int | None = None, window="hann", periodic: bool = True, center: bool = True,
                 tail: str = "pad") -> torch.Tensor:
    """Noisy-phase resynthesis, Eq. 29 of the partitioned-autoencoder thesis: the waveform whose
    STFT has magnitude ``magnitude`` (an estimate of the clean one) and phase ``phase`` (the
    noisy signal's, from :func:`magnitude_phase`), by :func:`istft` (overlap-add) with the
    framing the noisy STFT was made with. Differentiable in ``magnitude``."""
    if magnitude.shape != phase.shape:
        raise ValueError(f"magnitude {tuple(magnitude.shape)} and phase {tuple(phase.shape)} must have one shape")
    return istft(torch.polar(magnitude, phase.to(magnitude.dtype)), n_fft, hop, length=length, win_length=win_length,
                 window=window, periodic=periodic, center=center, tail=tail)


# ---------------------------------------------------------------------------------------------
# One framing, kept together


@dataclass(frozen=True)
class STFT:
    """One STFT configuration: what a spectral model stores, and passes to every function above.

    The defaults are the analysis-synthesis convention of the masking models: periodic Hann,
    frames centred on multiples of ``hop``, zero padding, every frame that starts before the
    signal's end (``tail="pad"``). ``STFT(1024, 512)`` is the autoencoders' framing (thesis,
    "1024-sample frames at 16 kHz with a Hanning window with 50% overlap"), ``STFT(800, 400)`` the
    BiLSTM's (50 ms / 25 ms at 16 kHz).
    """

    n_fft: int = 1024
    hop: int = 512
    win_length: int | None = None
    window: str = "hann"
    periodic: bool = True
    center: bool = True
    pad_mode: str = "constant"
    tail: str = "pad"

    def __post_init__(self):
        _check_framing(self.frame_length, self.hop, self.tail, self.pad_mode)
        if self.window not in WINDOWS:
            raise ValueError(f"unknown window {self.window!r}; use one of {', '.join(WINDOWS)}")

    @property
    def frame_length(self) -> int:
        return _frame_length(self.n_fft, self.win_length)

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def context_samples(self) -> int:
        """Input samples each side that one resynthesised output sample depends on: it lies in the
        frames starting less than ``frame_length`` samples before it, each of which reads
        ``frame_length`` samples, so ``frame_length - 1`` (whether or not the frames are centred).
        Exact chunking also needs every chunk to start on a multiple of ``hop`` (the frame grid)."""
        return self.frame_length - 1

    def window_values(self, dtype=torch.float32, device=None) -> torch.Tensor:
        return window(self.window, self.frame_length, periodic=self.periodic, dtype=dtype, device=device)

    def frame_count(self, length: int) -> int:
        return frame_count(length, self.frame_length, self.hop, center=self.center, tail=self.tail)

    def frames(self, x, count: int | None = None):
        return frames(x, self.frame_length, self.hop, center=self.center, pad_mode=self.pad_mode, tail=self.tail,
                      count=count)

    def stft(self, x):
        return stft(x, self.n_fft, self.hop, win_length=self.win_length, window=self.window, periodic=self.periodic,
                    center=self.center, pad_mode=self.pad_mode, tail=self.tail)

    def istft(self, spectrum: torch.Tensor, length: int) -> torch.Tensor:
        return istft(spectrum, self.n_fft, self.hop, length=length, win_length=self.win_length, window=self.window,
                     periodic=self.periodic, center=self.center, tail=self.tail)

    def resynthesize(self, magnitude: torch.Tensor, phase: torch.Tensor, length: int) -> torch.Tensor:
        return resynthesize(magnitude, phase, self.n_fft, self.hop, length=length, win_length=self.win_length,
                            window=self.window, periodic=self.periodic, center=self.center, tail=self.tail)


__all__ = ["MIN_WINDOW_SUM", "PAD_MODES", "STFT", "TAILS", "WINDOWS", "OverlapAddStream", "frame_count",
           "frame_padding", "frame_spectra", "frames", "istft", "magnitude_phase", "overlap_add", "resynthesize",
           "stft", "window"]
