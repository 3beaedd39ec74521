"""Context aggregation network (CAN) for raw-waveform denoising.

speech-denoising-deep-feature-losses.txt, section II-A: 16 layers counting the N x 1 input and
output; 14 intermediate N x W layers, each a 3x1 dilated convolution without bias, an adaptive
normalisation ``alpha * x + beta * BN(x)`` and LReLU ``max(0.2x, x)``; dilation 2^0 .. 2^12 for
the first 13, none for the 14th; a 1x1 output convolution with bias, no normalisation and no
nonlinearity; zero padding keeps every layer at length N; receptive field 2^14 + 1 samples.
Section III-B: Xavier initialisation, zero biases, alpha = 1 and beta = 0 at start.

Sample scale. The authors' code reads 16-bit WAV files with ``scipy.io.wavfile`` and casts them
to float without rescaling, so their network, its losses and Adam (lr 1e-4, eps 1e-8) all work
on integer-scaled samples (|x| up to 2^15). The network and the waveform losses here do the
same internally (``wave_scale``, default 2^15) while the API stays in [-1, 1]. Without it the
same recipe does not train: with samples of order 0.05 the gradients of the deep layers fall
below Adam's eps, and the output collapses onto its bias (measured: output std 1e-5 and the L1
loss equal to ``mean|clean|`` after 150 steps; with the scale the loss goes below the noisy
input's within 200 steps of the same data).

Width, depth (through ``dilations``) and kernel size are init arguments, so smaller and larger
variants are configs, not code. The deep feature loss (Eq. 1) lives with the feature-loss model;
this module trains with the L1 or L2 waveform losses of the paper's Table II.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..module import DenoiserModule
from ..registry import register

PAPER = "speech-denoising-deep-feature-losses.txt (Germain, Chen & Koltun 2019), sec. II-A, Table II"
SHARED_DATA = ("LibriSpeech + LJSpeech x Speech Commands + NOISEX noise and babble, mixed at -5..20 dB "
               "(../shared/data; held-out speakers and noises validate)")

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

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """With the batch statistics frozen (eval mode) the layer is the per-channel affine map
        ``scale * x + shift``; returns (scale, shift) so it can be folded into the convolution."""
        bn = self.bn
        inv_std = torch.rsqrt(bn.running_var + bn.eps)
        gamma = bn.weight if bn.affine else torch.ones_like(inv_std)
        bias = bn.bias if bn.affine else torch.zeros_like(inv_std)
        scale = self.alpha + self.beta * gamma * inv_std
        shift = self.beta * (bias - gamma * bn.running_mean * inv_std)
        return scale, shift


class ContextAggregationNetwork(nn.Module):
    """wave [B, T] -> wave [B, T]; output sample t sees inputs t - context .. t + context."""

    def __init__(self, width: int = 64, dilations: tuple[int, ...] = PAPER_DILATIONS, kernel_size: int = 3,
                 wave_scale: float = 2.0**15):
        super().__init__()
        self.wave_scale = float(wave_scale)
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
        x = wave.unsqueeze(1) * self.wave_scale
        x = self.body(x) if self.training else self._folded_body(x)
        return self.output(x).squeeze(1) / self.wave_scale

    def forward_with_input_statistics(self, wave: torch.Tensor) -> torch.Tensor:
        """The network as the authors' TensorFlow inference runs it: ``slim.batch_norm`` keeps its
        default ``is_training=True`` there (and the moving averages are never restored), so every
        layer is normalised with the mean and variance of the input being enhanced, not with the
        running statistics of training. Running statistics are left untouched. This cannot stream
        (each layer needs the whole input's activations), so the zoo's path folds the running
        statistics instead; ``benchmarks/norm_statistics.py`` measures the difference."""
        x = wave.unsqueeze(1) * self.wave_scale
        layers = list(self.body)
        for conv, norm, act in zip(layers[0::3], layers[1::3], layers[2::3]):
            x = conv(x)
            bn = norm.bn
            x = norm.alpha * x + norm.beta * F.batch_norm(x, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)
            x = act(x)
        return self.output(x).squeeze(1) / self.wave_scale

    def widened(self, width: int, seed: int = 0, jitter: float = 0.1) -> "ContextAggregationNetwork":
        """A copy at ``width`` channels that computes the same function (Net2WiderNet, Chen,
        Goodfellow & Shlens 2016): new channel j copies old channel ``m(j)`` (the first ``self``
        width channels are themselves, the rest drawn at random), its batch-norm statistics and
        affine parameters included, and every weight reading a copied channel is split among its
        copies. The split fractions are ``1/copies * (1 + u - mean u)`` per weight element, so
        they sum to one (the output is unchanged, in training and in eval mode, since copies of a
        channel have equal batch statistics) but differ between copies, which breaks the symmetry
        that would otherwise keep the copies equal under gradient descent.

        This is how a network trained at W=32 on this CPU is carried to the paper's W=64 without
        starting again (``zoo.train.StartFrom(widen=True)``)."""
        layers = list(self.body)
        convs = layers[0::3]
        old = convs[0].out_channels
        if width < old:
            raise ValueError(f"cannot widen a W={old} network to W={width}: choose a width of at least {old}")
        generator = torch.Generator().manual_seed(seed)
        origin = torch.cat([torch.arange(old), torch.randint(0, old, (width - old,), generator=generator)])
        copies = torch.bincount(origin, minlength=old).to(torch.float32)

        def split(weight: torch.Tensor) -> torch.Tensor:
            """``weight[:, origin]`` with each column divided among the copies of its channel."""
            spread = weight[:, origin]
            u = (torch.rand(spread.shape, generator=generator) * 2 - 1) * jitter
            mean_u = torch.zeros(weight.shape).index_add_(1, origin, u) / copies[None, :, None]
            fraction = (1 + u - mean_u[:, origin]) / copies[origin][None, :, None]
            return spread * fraction

        dilations = tuple(conv.dilation[0] for conv in convs)
        wider = ContextAggregationNetwork(width, dilations, convs[0].kernel_size[0], self.wave_scale)
        wide_layers = list(wider.body)
        with torch.no_grad():
            for i, (conv, norm) in enumerate(zip(convs, layers[1::3])):
                weight = conv.weight.detach().float()
                weight = weight if i == 0 else split(weight)
                wide_layers[3 * i].weight.copy_(weight[origin])
                wide_norm = wide_layers[3 * i + 1]
                wide_norm.alpha.copy_(norm.alpha)
                wide_norm.beta.copy_(norm.beta)
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(wide_norm.bn, name).copy_(getattr(norm.bn, name)[origin])
                wide_norm.bn.num_batches_tracked.copy_(norm.bn.num_batches_tracked)
            wider.output.weight.copy_(split(self.output.weight.detach().float()))
            wider.output.bias.copy_(self.output.bias)
        return wider.train(self.training)

    def _folded_body(self, x: torch.Tensor) -> torch.Tensor:
        """The body at inference: each adaptive normalisation folded into the convolution before
        it (a bias appears), so a layer is one convolution and one LReLU; same output as ``body``
        in eval mode to float rounding. Folding costs a few thousand multiplies per call, so it is
        redone on every call rather than cached (no stale copy after training resumes)."""
        layers = list(self.body)
        for conv, norm, act in zip(layers[0::3], layers[1::3], layers[2::3]):
            scale, shift = norm.folded()
            x = F.conv1d(x, conv.weight * scale[:, None, None], shift, dilation=conv.dilation, padding=conv.padding)
            # in place: the convolution's output is a fresh tensor, and at W=64 a second one per
            # layer costs a quarter of the inference time (memory traffic, not arithmetic)
            x = F.leaky_relu(x, act.negative_slope, inplace=True)
        return x


class CANDenoiserBase(DenoiserModule):
    """A denoiser whose network is the CAN; subclasses choose the loss and save their own
    hyper-parameters (so that each config.json holds exactly its class's arguments)."""

    def _build(self, width: int, dilations, kernel_size: int, sample_rate: int, wave_scale: float) -> None:
        self.sample_rate = sample_rate
        self.network = ContextAggregationNetwork(width, tuple(dilations), kernel_size, wave_scale)
        self.context_samples = self.network.context

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.network(wave)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


@register("can-l2", card="hub_cards/can-l2", hub_repo="zoo-denoise/can-l2", paper=PAPER, trained_on=SHARED_DATA,
          summary="Context aggregation network (14 dilated layers, 1 s receptive field; published at W=32) "
                  "trained with the L2 waveform loss, the feature-loss paper's L2 baseline")
@register("can-l1", card="hub_cards/can-l1", hub_repo="zoo-denoise/can-l1", paper=PAPER, trained_on=SHARED_DATA,
          summary="Context aggregation network (14 dilated layers, 1 s receptive field; published at W=32) "
                  "trained with the L1 waveform loss, the feature-loss paper's L1 baseline")
class ContextAggregationDenoiser(CANDenoiserBase):
    """The CAN trained with an L1 or L2 waveform loss (the paper's Table II baselines)."""

    def __init__(self, width: int = 64, dilations: tuple[int, ...] = PAPER_DILATIONS, kernel_size: int = 3,
                 loss_type: str = "l1", lr: float = 1e-4, sample_rate: int = 16000, wave_scale: float = 2.0**15):
        super().__init__()
        if loss_type not in ("l1", "l2"):
            raise ValueError(f"loss_type must be 'l1' or 'l2', not {loss_type!r}")
        self.save_hyperparameters()
        self._build(width, dilations, kernel_size, sample_rate, wave_scale)

    def loss(self, enhanced: torch.Tensor, batch: dict) -> torch.Tensor:
        # In integer-scaled units, as the authors' losses were (see the module docstring).
        error = (enhanced - batch["clean"]) * self.network.wave_scale
        return error.abs().mean() if self.hparams.loss_type == "l1" else error.pow(2).mean()
