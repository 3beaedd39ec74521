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

from ..inference import OverlapStream, WholeSignalStream
from ..module import DenoiserModule
from ..registry import register

PAPER = "speech-denoising-deep-feature-losses.txt (Germain, Chen & Koltun 2019), sec. II-A, Table II"
SHARED_DATA = ("LibriSpeech + LJSpeech x Speech Commands + NOISEX noise and babble, mixed at -5..20 dB "
               "(../shared/data; held-out speakers and noises validate)")

PAPER_DILATIONS = tuple(2**k for k in range(13)) + (1,)
#: CPU inference paths of a CAN (``runtime`` init argument, also a load option:
#: ``zoo.load("feature-loss-can", runtime="bf16")`` or ``feature-loss-can:runtime=bf16``):
#: "auto" (zoo.models.can_runtime where measured faster and equal, the network's forward elsewhere),
#: "torch" (always the network's forward), "fp32" / "bf16" (always zoo.models.can_runtime, in that precision)
RUNTIMES = ("auto", "torch", "fp32", "bf16")


NORMALIZATIONS = ("batch", "input", "calibrated")


class AdaptiveNorm(nn.Module):
    """``alpha * x + beta * BN(x)`` with scalar alpha, beta per layer (sec. II-A b)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(()))
        self.beta = nn.Parameter(torch.zeros(()))
        self.bn = nn.BatchNorm1d(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * x + self.beta * self.bn(x)

    def affine_for(self, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift) of the layer when BN uses the statistics ``mean``, ``var`` (any leading
        shape, channels last): ``alpha * x + beta * BN(x) = scale * x + shift``."""
        bn = self.bn
        inv_std = torch.rsqrt(var + bn.eps)
        gamma = bn.weight if bn.affine else torch.ones_like(inv_std)
        bias = bn.bias if bn.affine else torch.zeros_like(inv_std)
        scale = self.alpha + self.beta * gamma * inv_std
        shift = self.beta * (bias - gamma * mean * inv_std)
        return scale, shift

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """With the batch statistics frozen (eval mode) the layer is the per-channel affine map
        ``scale * x + shift``; returns (scale, shift) so it can be folded into the convolution."""
        return self.affine_for(self.bn.running_mean, self.bn.running_var)


class ContextAggregationNetwork(nn.Module):
    """wave [B, T] -> wave [B, T]; output sample t sees inputs t - context .. t + context.

    ``normalization`` says which statistics the batch normalisation inside each adaptive
    normalisation uses:

    - ``"batch"``: the zoo's CPU-trained CANs: statistics of the training batch, and the running
      averages (folded into the convolutions) at inference.
    - ``"input"``: the authors' released network. Their TensorFlow graph leaves
      ``slim.batch_norm``'s ``is_training`` at True, in training and at inference, so every layer is
      normalised with the mean and variance of the signal being processed (each batch row on its
      own; their batches held one file). Their dilated layers are computed by reshaping the signal
      into ``dilation`` interleaved phases after zero-padding it to a multiple of the dilation, and
      the statistics are taken before the padding is cut off again: the ``(-T) mod dilation``
      padding positions count, and so they do here (see :meth:`layer_output`). Statistics may be
      given (``forward(wave, statistics)``, measured over a whole file in a first pass, see
      :meth:`measure_statistics`); otherwise they are those of ``wave``.
    - ``"calibrated"``: trains as ``"input"`` and keeps running averages of the per-row
      statistics; at inference those fixed statistics are folded into the convolutions, so the
      network streams like ``"batch"``.
    """

    def __init__(self, width: int = 64, dilations: tuple[int, ...] = PAPER_DILATIONS, kernel_size: int = 3,
                 wave_scale: float = 2.0**15, normalization: str = "batch", norm_eps: float = 1e-5):
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, not {normalization!r}")
        self.wave_scale = float(wave_scale)
        self.normalization = normalization
        layers = []
        channels = 1
        for dilation in dilations:
            layers += [
                nn.Conv1d(channels, width, kernel_size, dilation=dilation,
                          padding=dilation * (kernel_size - 1) // 2, bias=False),
                AdaptiveNorm(width, norm_eps),
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

    def forward(self, wave: torch.Tensor, statistics: list | None = None) -> torch.Tensor:
        x = wave.unsqueeze(1) * self.wave_scale
        if self.normalization == "batch" or (self.normalization == "calibrated" and not self.training):
            x = self.body(x) if self.training else self._folded_body(x)
        else:
            x = self._input_statistics_body(x, statistics)
        return self.output(x).squeeze(1) / self.wave_scale

    def forward_with_input_statistics(self, wave: torch.Tensor) -> torch.Tensor:
        """The network as the authors' TensorFlow inference runs it, whatever ``normalization`` it
        was built with: every layer normalised with the statistics of ``wave`` (each row its
        own); running statistics are left untouched. ``benchmarks/diagnostics/norm_statistics.py`` compares
        it with the folded running statistics of the zoo's CPU-trained weights."""
        x = wave.unsqueeze(1) * self.wave_scale
        with _frozen_running_statistics(self):
            x = self._input_statistics_body(x, None)
        return self.output(x).squeeze(1) / self.wave_scale

    def layers(self):
        """(convolution, adaptive normalisation, activation) per layer."""
        body = list(self.body)
        return list(zip(body[0::3], body[1::3], body[2::3]))

    @staticmethod
    def layer_output(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
        """The convolution as the authors' graph computes it: over the signal zero-padded at its end
        to a multiple of the dilation (their dilation-by-reshape), so ``(-T) mod dilation`` extra
        positions come out (each one the left tap applied to a sample ``dilation`` back); the
        caller takes statistics over them and then keeps the first T."""
        dilation = conv.dilation[0]
        pad = (-x.shape[-1]) % dilation
        if pad:
            x = F.pad(x, (0, pad))
        return F.conv1d(x, conv.weight, None, dilation=dilation, padding=conv.padding)

    def _input_statistics_body(self, x: torch.Tensor, statistics: list | None) -> torch.Tensor:
        length = x.shape[-1]
        for i, (conv, norm, act) in enumerate(self.layers()):
            y = self.layer_output(conv, x)
            if statistics is not None:
                mean, var = (s.to(y) for s in statistics[i])
            else:
                var, mean = torch.var_mean(y.float(), dim=-1, correction=0)  # in fp32 under autocast too
                if self.training:
                    bn = norm.bn
                    with torch.no_grad():  # population statistics = averages of the per-row ones
                        momentum = bn.momentum if bn.momentum is not None else 0.1
                        bn.running_mean.lerp_(mean.detach().mean(0), momentum)
                        bn.running_var.lerp_(var.detach().mean(0), momentum)
                        bn.num_batches_tracked += 1
            scale, shift = norm.affine_for(mean, var)
            x = y[..., :length] * scale.unsqueeze(-1) + shift.unsqueeze(-1)
            x = act(x)
        return x

    def measure_statistics(self, blocks) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-layer (mean, var), each [B, W], of ``"input"`` normalisation over a signal seen only in
        blocks, in bounded memory: one pass over the signal per layer, since layer k's statistics
        need layers 0..k-1 normalised with theirs. ``blocks`` is a callable returning a fresh
        iterator of [B, n] blocks of the same signal each time. Equals the statistics ``forward``
        takes from the whole signal at once, padding positions included, to float rounding
        (sums in float64)."""
        from ..inference import Chain, OverlapStream, run_stream

        statistics: list[tuple[torch.Tensor, torch.Tensor]] = []
        layers = self.layers()
        with torch.inference_mode():
            for k, (conv, _, _) in enumerate(layers):
                dilation = conv.dilation[0]
                context = sum(c.dilation[0] for c, _, _ in layers[:k]) * (conv.kernel_size[0] - 1) // 2
                # what enters layer k (exact: layers 0..k-1 with their whole-signal statistics)
                entering = OverlapStream(lambda w, k=k: self._first_layers(w, statistics, k), context)
                sums = squares = tail = None
                count = 0
                convolved = OverlapStream(lambda x, conv=conv: conv(x), dilation)
                for x in run_stream(entering, blocks()):
                    tail = x[..., -dilation:] if tail is None else torch.cat([tail, x], -1)[..., -dilation:]
                    y = convolved.push(x)
                    sums, squares, count = _accumulate(y, sums, squares, count)
                y = convolved.flush()
                sums, squares, count = _accumulate(y, sums, squares, count)
                length = count
                pad = (-length) % dilation
                if pad:  # the padding positions of the authors' reshape: the left tap on x[t - dilation]
                    tail = F.pad(tail, (dilation - tail.shape[-1], 0))  # signals shorter than the dilation
                    y = F.conv1d(tail[..., :pad], conv.weight[..., :1])
                    sums, squares, count = _accumulate(y, sums, squares, count)
                mean = sums / count
                var = (squares / count - mean * mean).clamp_min(0)
                statistics.append((mean.float(), var.float()))
        return statistics

    def calibrate(self, waves) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Fixed statistics for ``"calibrated"`` normalisation from a calibration set, stored in the
        batch-norm running buffers and returned. Layer by layer: layer k's statistics are the means,
        over the set, of each signal's own mean and variance at layer k, with layers 0..k-1
        already normalised by the calibrated statistics (as inference will run them), padding
        positions counted as in ``"input"`` normalisation. ``waves``: 1-D tensors in [-1, 1]."""
        xs = [w.reshape(1, 1, -1).float() * self.wave_scale for w in waves]
        statistics = []
        with torch.inference_mode():
            for conv, norm, act in self.layers():
                outputs = [self.layer_output(conv, x) for x in xs]
                per_signal = [torch.var_mean(y, dim=-1, correction=0) for y in outputs]
                var = torch.cat([v for v, _ in per_signal]).mean(0)
                mean = torch.cat([m for _, m in per_signal]).mean(0)
                norm.bn.running_mean.copy_(mean)
                norm.bn.running_var.copy_(var)
                scale, shift = norm.affine_for(mean, var)
                xs = [act(y[..., :x.shape[-1]] * scale[:, None] + shift[:, None]) for x, y in zip(xs, outputs)]
                statistics.append((mean, var))
        return statistics

    def _first_layers(self, wave: torch.Tensor, statistics: list, k: int) -> torch.Tensor:
        """The activations entering layer ``k`` [B, W, T] (the scaled input [B, 1, T] for k = 0),
        layers 0..k-1 normalised with ``statistics``."""
        x = wave.unsqueeze(1) * self.wave_scale
        for (conv, norm, act), (mean, var) in zip(self.layers()[:k], statistics):
            scale, shift = norm.affine_for(mean.to(x), var.to(x))
            x = act(conv(x) * scale.unsqueeze(-1) + shift.unsqueeze(-1))
        return x

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
        wider = ContextAggregationNetwork(width, dilations, convs[0].kernel_size[0], self.wave_scale, self.normalization,
                                          layers[1].bn.eps)
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


def _accumulate(y: torch.Tensor, sums, squares, count: int):
    """Running per-row, per-channel sums of ``y`` [B, W, n] and of its squares, in float64."""
    if y.dim() < 3 or y.shape[-1] == 0:
        return sums, squares, count
    y = y.double()
    s, q = y.sum(-1), (y * y).sum(-1)
    if sums is None:
        return s, q, y.shape[-1]
    return sums + s, squares + q, count + y.shape[-1]


class _frozen_running_statistics:
    """Context: a network's batch-norm running statistics come out as they went in."""

    def __init__(self, network: nn.Module):
        self.network = network

    def __enter__(self):
        self.saved = {k: v.clone() for k, v in self.network.state_dict().items() if "running" in k or "num_batches" in k}

    def __exit__(self, *exc):
        state = self.network.state_dict()
        for key, value in self.saved.items():
            state[key].copy_(value)


class CANDenoiserBase(DenoiserModule):
    """A denoiser whose network is the CAN; subclasses choose the loss and save their own
    hyper-parameters (so that each config.json holds exactly its class's arguments)."""

    def _build(self, width: int, dilations, kernel_size: int, sample_rate: int, wave_scale: float,
               normalization: str = "batch", norm_eps: float = 1e-5, runtime: str = "auto") -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        self.runtime = runtime
        self.sample_rate = sample_rate
        self.network = ContextAggregationNetwork(width, tuple(dilations), kernel_size, wave_scale, normalization,
                                                 norm_eps)
        self.context_samples = self.network.context

    def forward(self, wave: torch.Tensor, statistics: list | None = None) -> torch.Tensor:
        mode = self._runtime_mode(wave, statistics)
        if mode is None:
            return self.network(wave, statistics)
        from .can_runtime import CANRuntime, forward_with_input_statistics

        if self.network.normalization == "input" and statistics is None:
            return forward_with_input_statistics(self.network, wave, mode=mode)
        return CANRuntime.from_network(self.network, statistics, mode=mode)(wave)

    def _runtime_mode(self, wave: torch.Tensor, statistics) -> str | None:
        """``zoo.models.can_runtime`` instead of the network's forward: inference on the CPU only
        (no gradient), and with ``runtime: auto`` only where it was measured faster and equal to
        float rounding (the released network's per-input statistics: 3.4x; benchmarks/speed.py)."""
        if self.training or torch.is_grad_enabled() or wave.device.type != "cpu" or self.runtime == "torch":
            return None
        if self.runtime == "auto":
            return "fp32" if self.network.normalization == "input" and statistics is None else None
        return self.runtime

    @property
    def needs_input_statistics(self) -> bool:
        return self.network.normalization == "input"

    def measure_input_statistics(self, blocks):
        return self.network.measure_statistics(lambda: (b.to(self.device, torch.float32) for b in blocks()))

    def stream(self, statistics=None):
        """``"input"`` normalisation: with the whole input's statistics (measured first for inputs
        longer than a block) every output has the finite receptive field again and streams like
        the other modes; without them, the input is one block and is processed whole."""
        if not self.needs_input_statistics:
            return super().stream()
        if statistics is None:
            return WholeSignalStream(self._forward_eval)
        return OverlapStream(lambda wave: self._forward_eval(wave, statistics), self.context_samples)

    @property
    def width(self) -> int:
        """W, the channels of every hidden layer (sec. II-A); ``zoo.train.StartFrom`` records it."""
        return self.network.body[0].out_channels

    def widen_to(self, width: int) -> None:
        """Grow to ``width`` channels with the same output (Net2WiderNet,
        :meth:`ContextAggregationNetwork.widened`), for ``zoo.train.StartFrom(widen=True)``."""
        self.network = self.network.widened(width)

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
                 loss_type: str = "l1", lr: float = 1e-4, sample_rate: int = 16000, wave_scale: float = 2.0**15,
                 runtime: str = "auto"):
        super().__init__()
        if loss_type not in ("l1", "l2"):
            raise ValueError(f"loss_type must be 'l1' or 'l2', not {loss_type!r}")
        self.save_hyperparameters()
        self._build(width, dilations, kernel_size, sample_rate, wave_scale, runtime=runtime)

    def loss(self, outputs: dict, batch: dict) -> torch.Tensor:
        # In integer-scaled units, as the authors' losses were (see the module docstring).
        error = (outputs["enhanced"] - batch["clean"]) * self.network.wave_scale
        return error.abs().mean() if self.hparams.loss_type == "l1" else error.pow(2).mean()
