"""Context aggregation network (CAN) for raw-waveform denoising.

speech-denoising-deep-feature-losses.txt, section II-A: 16 layers counting the N x 1 input and
output; 14 intermediate N x W layers, each a 3x1 dilated convolution without bias, an adaptive
normalisation ``alpha * x + beta * BN(x)`` and LReLU ``max(0.2x, x)``; dilation 2^0 .. 2^12 for
the first 13, none for the 14th; a 1x1 output convolution with bias, no normalisation and no
nonlinearity; zero padding keeps every layer at length N; receptive field 2^14 + 1 samples.
Section III-B: Xavier initialisation, zero biases, alpha = 1 and beta = 0 at start.

Width, depth (through ``dilations``) and kernel size are init arguments, so smaller and larger
variants are configs, not code. The deep feature loss (Eq. 1) lives with the feature-loss model;
this module trains with the L1 or L2 waveform losses of the paper's Table II.
"""
from __future__ import annotations

import torch
from torch import nn

from ..module import DenoiserModule

PAPER_DILATIONS = tuple(2**k for k in range(13)) + (1,)


class AdaptiveNorm(nn.Module):
    """``alpha * x + beta * BN(x)`` with scalar alpha, beta per layer (sec. II-A b)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(()))
        self.beta = nn.Parameter(torch.zeros(()))
        self.bn = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * x + self.beta * self.bn(x)


class ContextAggregationNetwork(nn.Module):
    """wave [B, T] -> wave [B, T]; output sample t sees inputs t - context .. t + context."""

    def __init__(self, width: int = 64, dilations: tuple[int, ...] = PAPER_DILATIONS, kernel_size: int = 3):
        super().__init__()
        layers = []
        channels = 1
        for dilation in dilations:
            layers += [
                nn.Conv1d(channels, width, kernel_size, dilation=dilation,
                          padding=dilation * (kernel_size - 1) // 2, bias=False),
                AdaptiveNorm(width),
                nn.LeakyReLU(0.2),
            ]
            channels = width
        self.body = nn.Sequential(*layers)
        self.output = nn.Conv1d(channels, 1, 1, bias=True)
        self.context = sum(dilations) * (kernel_size - 1) // 2
        for module in self.modules():
            if isinstance(module, nn.Conv1d):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @property
    def receptive_field(self) -> int:
        return 2 * self.context + 1

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.output(self.body(wave.unsqueeze(1))).squeeze(1)


class CANDenoiserBase(DenoiserModule):
    """A denoiser whose network is the CAN; subclasses choose the loss and save their own
    hyper-parameters (so that each config.json holds exactly its class's arguments)."""

    def _build(self, width: int, dilations, kernel_size: int, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.network = ContextAggregationNetwork(width, tuple(dilations), kernel_size)
        self.context_samples = self.network.context

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.network(wave)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


class ContextAggregationDenoiser(CANDenoiserBase):
    """The CAN trained with an L1 or L2 waveform loss (the paper's Table II baselines)."""

    def __init__(self, width: int = 64, dilations: tuple[int, ...] = PAPER_DILATIONS, kernel_size: int = 3,
                 loss_type: str = "l1", lr: float = 1e-4, sample_rate: int = 16000):
        super().__init__()
        if loss_type not in ("l1", "l2"):
            raise ValueError(f"loss_type must be 'l1' or 'l2', not {loss_type!r}")
        self.save_hyperparameters()
        self._build(width, dilations, kernel_size, sample_rate)

    def loss(self, enhanced: torch.Tensor, batch: dict) -> torch.Tensor:
        error = enhanced - batch["clean"]
        return error.abs().mean() if self.hparams.loss_type == "l1" else error.pow(2).mean()
