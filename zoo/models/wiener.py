"""Wiener filter with decision-directed a priori SNR estimation (the feature-loss paper's baseline).

speech-denoising-deep-feature-losses.txt, section IV-A ("Baselines"): "a Wiener filtering
pipeline with a priori noise SNR estimation (as implemented in [39])", i.e. Scalart & Filho
(1996) as implemented in Loizou, *Speech Enhancement: Theory and Practice*, ``wiener_as.m``:

- 20 ms Hamming frames, 50 % overlap, FFT of twice the next power of two;
- noise magnitude spectrum initialised from the first 6 (non-overlapping) frames, then updated
  as ``N <- mu N + (1 - mu) |Y|^2`` in frames a likelihood-ratio VAD calls noise (eta = 0.15);
- a posteriori SNR ``gamma = min(|Y|^2 / N, 40)``; decision-directed a priori SNR
  ``xi = a |X_prev|^2 / N + (1 - a) max(gamma - 1, 0)`` with a = 0.98, floored at -25 dB;
- Wiener gain ``H = xi / (1 + xi)`` applied to the noisy spectrum; overlap-add synthesis.

The filter is recursive (each frame's SNR estimate uses the previous frame's output), so it
streams with explicit state; ``forward`` runs the same stream over the whole signal, which makes
chunked and whole-file processing identical by construction. Differences from ``wiener_as.m``,
all at the edges: the last partial frame is zero-padded so every input sample gets an output
(MATLAB drops it), inputs shorter than 6 frames initialise the noise from the frames they have,
and a 1e-12 floor on the noise power keeps digital silence silent instead of NaN.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..frontends.stft import OverlapAddStream, frame_count, frame_padding, frame_spectra, frames, window
from ..module import DenoiserModule
from ..registry import register

_NOISE_FLOOR = 1e-12


@register(
    "wiener",
    card="hub_cards/wiener",
    hub_repo="zoo-denoise/wiener",
    summary="Wiener filter, decision-directed a priori SNR (Scalart & Filho 1996); no training",
    paper="speech-denoising-deep-feature-losses.txt (baseline, sec. IV-A)",
    trained_on="nothing (classical signal processing)",
)
class WienerFilter(DenoiserModule):
    trainable = False

    def __init__(
        self,
        sample_rate: int = 16000,
        frame_ms: float = 20.0,
        smoothing: float = 0.98,
        noise_update: float = 0.98,
        vad_threshold: float = 0.15,
        xi_min_db: float = -25.0,
        gamma_max: float = 40.0,
        noise_init_frames: int = 6,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.sample_rate = sample_rate
        self.frame = int(math.floor(sample_rate * frame_ms / 1000))
        self.hop = self.frame - self.frame // 2  # len2 = len - len1 with 50 % overlap
        self.n_fft = 2 * 2 ** math.ceil(math.log2(self.frame))
        # MATLAB's hamming(len): symmetric. Frames start at multiples of the hop from the signal's
        # start (no centring) and are zero-padded at their end to n_fft (fft(x, nfft)).
        hamming = window("hamming", self.frame, periodic=False, dtype=torch.float64)
        self.register_buffer("window", hamming, persistent=False)
        self.ola_gain = self.hop / float(hamming.sum())  # unit gain for 50 % overlap-add

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        stream = self.stream()
        out = torch.cat([stream.push(wave), stream.flush()], dim=-1)
        return out.to(wave.dtype)

    def stream(self) -> "WienerStream":
        return WienerStream(self)

    def loss(self, enhanced, batch):
        raise RuntimeError("the Wiener filter has no parameters to train")


class WienerStream:
    """Carries the filter's recursive state across blocks of any size."""

    def __init__(self, filt: WienerFilter):
        self.f = filt
        self.pending = None  # input samples not yet consumed by a frame: [B, n], float64
        self.noise_power = None  # [B, n_fft] noise PSD estimate, None until initialised
        self.prev_clean_power = None  # |X_prev|^2, None before the first frame
        self.synthesis = OverlapAddStream(filt.frame, filt.hop)  # holds the last frame's second half
        self.n_in = 0
        self.n_out = 0

    # ---- stream protocol ------------------------------------------------------------------
    def push(self, block: torch.Tensor) -> torch.Tensor:
        block = block.detach().to("cpu", torch.float64)
        self.pending = block if self.pending is None else torch.cat([self.pending, block], dim=-1)
        self.n_in += block.shape[-1]
        if self.noise_power is None:
            needed = self.f.hparams.noise_init_frames * self.f.frame
            if self.pending.shape[-1] < needed:
                return block.new_zeros(block.shape[0], 0).float()
            self._init_noise(self.pending[..., :needed], self.f.hparams.noise_init_frames)
        return self._frames()

    def flush(self) -> torch.Tensor:
        if self.pending is None:
            return torch.zeros(1, 0)
        f = self.f
        if self.noise_power is None:  # shorter than the noise-initialisation window
            n_frames = max(1, self.pending.shape[-1] // f.frame)
            self._init_noise(_pad_to(self.pending, n_frames * f.frame), n_frames)
        # Zero-pad so that a frame starts at every hop before the end (the front-end's tail="pad"):
        # the overlap-add then covers every remaining input sample.
        remaining = self.n_in - self.n_out
        _, right = frame_padding(remaining, f.frame, f.hop, center=False, tail="pad")
        self.pending = _pad_to(self.pending, remaining + right)
        out = self._frames()
        return out[..., : out.shape[-1] - (self.n_out - self.n_in)]

    # ---- the algorithm --------------------------------------------------------------------
    def _spectra(self, framed: torch.Tensor) -> torch.Tensor:
        # One-sided spectrum: the signal is real, so the other half mirrors it.
        return frame_spectra(framed, self.f.window.to(framed.device), self.f.n_fft)

    def _init_noise(self, head: torch.Tensor, n_frames: int) -> None:
        # wiener_as.m's noise estimate: the first frames laid end to end (hop = frame length)
        framed = frames(head, self.f.frame, self.f.frame, center=False, tail="drop", count=n_frames)
        magnitude = self._spectra(framed).abs().mean(dim=1)
        self.noise_power = (magnitude**2).clamp_min(_NOISE_FLOOR).numpy()

    def _frames(self) -> torch.Tensor:
        f, hp = self.f, self.f.hparams
        # the whole frames the pending samples hold; the rest waits for the next block
        count = frame_count(self.pending.shape[-1], f.frame, f.hop, center=False, tail="drop")
        batch = self.pending.shape[0]
        if count <= 0:
            return self.pending.new_zeros(batch, 0).float()
        framed = frames(self.pending, f.frame, f.hop, center=False, tail="drop")  # [B, count, frame]
        spectra = self._spectra(framed)
        power = (spectra.abs() ** 2).numpy()
        # The VAD sums the log-likelihood ratio over all n_fft bins of the two-sided spectrum:
        # interior bins of the one-sided spectrum count twice.
        bin_weight = np.full(power.shape[-1], 2.0)
        bin_weight[[0, -1]] = 1.0
        xi_min = 10 ** (hp.xi_min_db / 10)
        a, mu = hp.smoothing, hp.noise_update
        gains = np.empty_like(power)
        noise = self.noise_power
        prev = self.prev_clean_power
        # The recursion runs frame by frame on small arrays: numpy's per-call cost is far below
        # torch's here, and this loop is the filter's whole running time.
        for i in range(count):
            p_i = power[:, i]
            gamma = np.minimum(p_i / noise, hp.gamma_max)
            excess = np.maximum(gamma - 1, 0)
            if prev is None:
                xi = a + (1 - a) * excess
            else:
                xi = np.maximum(a * prev / noise + (1 - a) * excess, xi_min)
            gain = xi / (1 + xi)
            # Likelihood-ratio VAD: frames whose mean log-likelihood ratio is low update the noise.
            log_ratio = gamma * gain - np.log1p(xi)
            is_noise = (log_ratio @ bin_weight) / f.frame < hp.vad_threshold
            if is_noise.any():
                updated = np.maximum(mu * noise + (1 - mu) * p_i, _NOISE_FLOOR)
                noise = np.where(is_noise[:, None], updated, noise)
            prev = p_i * gain**2
            gains[:, i] = gain
        self.noise_power, self.prev_clean_power = noise, prev
        synthesis = torch.fft.irfft(torch.from_numpy(gains) * spectra, n=f.n_fft)
        frames_out = synthesis[..., : f.frame] * f.ola_gain  # [B, count, frame]
        # Overlap-add (no synthesis window, as wiener_as.m): output hop i is the first hop of frame
        # i plus what the frames before it left over.
        out = self.synthesis.push(frames_out)
        self.pending = self.pending[..., count * f.hop:]
        self.n_out += count * f.hop
        return out.float()


def _pad_to(x: torch.Tensor, length: int) -> torch.Tensor:
    return torch.nn.functional.pad(x, (0, max(0, length - x.shape[-1])))
