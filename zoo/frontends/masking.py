"""``MaskingDenoiser``: the base of spectral models that estimate a mask or a clean magnitude.

A masking model is three public steps, each a method a subclass may read or replace::

    features(wave)               -> SpectralFeatures   the noisy STFT: magnitude, phase, length
    estimate(features, **conds)  -> Tensor             the network: a mask, or a clean magnitude
    synthesis(estimate, features) -> wave              noisy-phase resynthesis (thesis Eq. 29)

    forward(wave) = synthesis(estimate(features(wave)), features(wave))

Subclasses give :meth:`estimate` only (and say what it returns with the class attribute
``estimates``: ``"mask"``, multiplied with the noisy magnitude, or ``"magnitude"``, used as the
clean magnitude). The boundary is where other tools cut the model: explanations attribute the
estimate to the input STFT bins (``features(wave).magnitude``), and ONNX export traces the network
core, :meth:`estimate`, between the two signal-processing ends, which stay in PyTorch.

The model declares how it streams from its framing (:class:`zoo.frontends.stft.STFT`):
``hop_samples`` is the hop (chunks must start on the frame grid) and ``context_samples`` is
``frame_length - 1`` plus ``context_frames * hop`` when the estimate of a frame also reads
``context_frames`` frames each side (a convolution over time). A model whose estimate sees the
whole signal (a BiLSTM) sets ``whole_signal_max_seconds`` instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..module import DenoiserModule
from .stft import STFT, magnitude_phase

ESTIMATES = ("mask", "magnitude")


@dataclass
class SpectralFeatures:
    """What :meth:`MaskingDenoiser.features` returns: real tensors, so that the network core can
    be traced and attributed on its own.

    ``magnitude`` and ``phase``: ``[..., frames, bins]`` of the noisy STFT (frames before bins);
    ``length``: the input's length in samples, which the synthesis cuts back to."""

    magnitude: torch.Tensor
    phase: torch.Tensor
    length: int


class MaskingDenoiser(DenoiserModule):
    """A denoiser that works on the noisy STFT magnitude and resynthesises with the noisy phase.

    ``n_fft``, ``hop``, ``win_length``, ``window`` and ``periodic`` are the framing
    (:class:`zoo.frontends.stft.STFT`: frames centred on multiples of ``hop``, zero padding, exact
    reconstruction); ``context_frames``: frames each side that one frame's estimate reads (0 for a
    frame-wise network). Subclasses call ``super().__init__(...)`` with them, then
    ``self.save_hyperparameters()``, and implement :meth:`estimate`.
    """

    #: what :meth:`estimate` returns: "mask" (a gain on the noisy magnitude) or "magnitude" (the clean one)
    estimates: ClassVar[str] = "mask"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.estimates not in ESTIMATES:
            raise TypeError(f"{cls.__name__}.estimates must be one of {', '.join(map(repr, ESTIMATES))}, "
                            f"got {cls.estimates!r}")

    def __init__(self, n_fft: int = 1024, hop: int = 512, win_length: int | None = None, window: str = "hann",
                 periodic: bool = True, context_frames: int = 0):
        super().__init__()
        if isinstance(context_frames, bool) or not isinstance(context_frames, int) or context_frames < 0:
            raise ValueError(f"context_frames must be a whole number of frames >= 0, got {context_frames!r}")
        self.frontend = STFT(n_fft=n_fft, hop=hop, win_length=win_length, window=window, periodic=periodic)
        self.context_frames = context_frames
        self.hop_samples = int(hop)
        self.context_samples = int(self.frontend.context_samples + context_frames * hop)

    # ---- the three steps --------------------------------------------------------------------
    def features(self, wave: torch.Tensor) -> SpectralFeatures:
        """The noisy STFT of ``wave`` ``[..., T]`` as magnitude and phase ``[..., frames, bins]``.

        Public: explanations attribute :meth:`estimate`'s output to ``magnitude``, the input STFT
        bins; export runs this step in PyTorch before the exported core."""
        magnitude, phase = magnitude_phase(self.frontend.stft(wave))
        return SpectralFeatures(magnitude=magnitude, phase=phase, length=wave.shape[-1])

    def estimate(self, features: SpectralFeatures, **conditions) -> torch.Tensor:
        """The network core: a mask (``estimates = "mask"``) or a clean magnitude
        (``"magnitude"``), ``[..., frames, bins]`` like ``features.magnitude``; ``conditions`` are
        ``forward``'s (estimated by the model when absent).

        Public, and what subclasses implement: ONNX export traces this method alone (its input
        is ``features.magnitude``, and ``features.phase`` when it reads it), and explanations
        attribute its output to the input bins."""
        raise NotImplementedError(f"{type(self).__name__} must implement estimate(features)")

    def synthesis(self, estimate: torch.Tensor, features: SpectralFeatures) -> torch.Tensor:
        """The waveform ``[..., T]`` of the estimated magnitude with the noisy phase (noisy-phase
        resynthesis, Eq. 29 of the partitioned-autoencoder thesis; overlap-add with window-sum
        normalisation). Public: export runs it in PyTorch after the exported core."""
        if estimate.shape != features.magnitude.shape:
            raise ValueError(f"{type(self).__name__}.estimate returned shape {tuple(estimate.shape)}; it must match "
                             f"the noisy magnitude's {tuple(features.magnitude.shape)} ([..., frames, bins])")
        magnitude = estimate * features.magnitude if self.estimates == "mask" else estimate
        return self.frontend.resynthesize(magnitude, features.phase, features.length)

    def forward(self, wave: torch.Tensor, **conditions) -> torch.Tensor:
        """``synthesis(estimate(features(wave)), features(wave))``, the features computed once."""
        features = self.features(wave)
        return self.synthesis(self.estimate(features, **conditions), features)


__all__ = ["ESTIMATES", "MaskingDenoiser", "SpectralFeatures"]
