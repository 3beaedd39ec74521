"""The deep feature loss of speech-denoising-deep-feature-losses.txt and the network behind it.

- ``FeatureLossNet`` (appendix B, Eqs. 7-10): 14 intermediate layers of 3-tap convolution
  without bias, batch normalisation and LReLU(0.2), each decimated by 2 (Eq. 8); width
  ``32 * 2 ** floor((m - 1) / 5)`` (doubling every 5 layers); the last layer before decimation
  is average-pooled and fed to one linear classifier per task (Eq. 9), softmax for single-label
  and sigmoid for multi-label tasks (Eq. 10). Receptive field 2^15 - 1 samples.
- ``FeatureLossNetModule``: pretrains it jointly on several classification tasks (sec. III-A):
  Xavier initialisation, Adam 1e-4, random crops of at least 2^15 samples, cross-entropy.
- ``DeepFeatureLoss`` (Eq. 1): ``sum_m lambda_m || Phi^m(s) - Phi^m(g(x)) ||_1`` over the first
  M = 6 feature layers; lambda_m = 1 for the first 10 epochs, then the inverse of each layer's
  relative loss measured over the 10th epoch (sec. II-B b). The weights and the running
  measurements are buffers, so checkpoints carry them and a resumed run keeps its schedule.
- ``FeatureLossCAN``: the context aggregation network trained with that loss (``feature-loss-can``).
"""
from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F

from ..registry import register
from .can import PAPER_DILATIONS, SHARED_DATA, CANDenoiserBase


class FeatureLossNet(nn.Module):
    """wave [B, T] -> per-layer features and per-task logits.

    Two layouts of the same network:

    - ``padding="symmetric"`` (the zoo's own pretrained ``feature-loss-net``): each layer is a
      3-tap convolution with one zero each side, batch normalisation of the full-rate output,
      LReLU, then every second sample kept.
    - ``padding="tf_same"`` (the authors' network, ``feature-loss-net-germain2019``): a stride-2
      convolution with TensorFlow's SAME padding (no zero on the left and one on the right for
      an even length, one each side for an odd length), then batch normalisation and LReLU; the
      last layer has stride 1. ``normalization="batch"`` uses the statistics of each call's batch,
      as the authors' training did (their loss network ran with ``is_training=True``);
      ``"running"`` uses the stored moving averages.
    """

    def __init__(self, n_layers: int = 14, base_width: int = 32, double_every: int = 5,
                 task_classes: tuple[int, ...] = (18, 5), padding: str = "symmetric", norm_eps: float = 1e-5,
                 normalization: str = "running"):
        super().__init__()
        if padding not in ("symmetric", "tf_same"):
            raise ValueError(f"padding must be 'symmetric' or 'tf_same', not {padding!r}")
        if normalization not in ("running", "batch"):
            raise ValueError(f"normalization must be 'running' or 'batch', not {normalization!r}")
        self.padding, self.normalization = padding, normalization
        layers, channels = [], 1
        for m in range(1, n_layers + 1):
            width = base_width * 2 ** ((m - 1) // double_every)
            conv = (nn.Conv1d(channels, width, 3, padding=1, bias=False) if padding == "symmetric"
                    else nn.Conv1d(channels, width, 3, stride=2 if m < n_layers else 1, bias=False))
            layers.append(nn.Sequential(conv, nn.BatchNorm1d(width, eps=norm_eps), nn.LeakyReLU(0.2)))
            channels = width
        self.layers = nn.ModuleList(layers)
        self.heads = nn.ModuleList(nn.Linear(channels, c) for c in task_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def features(self, wave: torch.Tensor, n_layers: int | None = None) -> list[torch.Tensor]:
        """Phi^1 .. Phi^M (after decimation), M = n_layers or all."""
        x, out = wave.unsqueeze(1), []
        if self.padding == "tf_same":
            for conv, bn, act in self.layers[: n_layers or len(self.layers)]:
                stride = conv.stride[0]
                length = x.shape[-1]
                total = max((-(-length // stride) - 1) * stride + 3 - length, 0)
                y = conv(F.pad(x, (total // 2, total - total // 2)))
                use_batch = self.normalization == "batch" or bn.training
                y = F.batch_norm(y, None if use_batch else bn.running_mean, None if use_batch else bn.running_var,
                                 bn.weight, bn.bias, training=use_batch, eps=bn.eps)
                x = act(y)
                out.append(x)
            return out
        for layer in self.layers[: n_layers or len(self.layers)]:
            x = layer(x)[..., ::2]  # Eq. 8: keep every second sample
            out.append(x)
        return out

    def forward(self, wave: torch.Tensor) -> list[torch.Tensor]:
        if self.padding == "tf_same":
            pooled = self.features(wave)[-1].mean(dim=-1)
            return [head(pooled) for head in self.heads]
        x = wave.unsqueeze(1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = x[..., ::2]
        pooled = x.mean(dim=-1)  # average-pool the last layer before decimation
        return [head(pooled) for head in self.heads]


class FeatureLossNetModule(L.LightningModule):
    """Pretrains ``FeatureLossNet`` on a single-label task (index 0) and multi-label tasks (1..).

    Batches: {"wave": [B, T], "task": [B] int, "target": [B, C_max] one-/multi-hot}.
    """

    def __init__(self, task_classes: tuple[int, ...] = (18, 5), multi_label: tuple[bool, ...] = (False, True),
                 task_names: tuple[str, ...] = ("noise type", "mixture tags"), lr: float = 1e-4):
        super().__init__()
        self.save_hyperparameters()
        self.net = FeatureLossNet(task_classes=tuple(task_classes))

    def setup(self, stage: str) -> None:
        """Refuse, before any step, data whose tasks are not the ones the heads were built for."""
        data = self._trainer.datamodule if self._trainer is not None else None
        wanted = getattr(data, "task_classes", None)
        if wanted is None:
            return
        ours = (list(self.hparams.task_classes), list(self.hparams.multi_label))
        theirs = (list(wanted), list(getattr(data, "multi_label", ours[1])))
        if ours != theirs:
            raise ValueError(f"the data has tasks with {theirs[0]} classes (multi_label {theirs[1]}) but the model "
                             f"was built for {ours[0]} ({ours[1]}): set --model.init_args.task_classes "
                             f"'{theirs[0]}' --model.init_args.multi_label '[{', '.join(str(m).lower() for m in theirs[1])}]'")

    def _losses(self, batch):
        logits = self.net(batch["wave"])
        total, stats = 0.0, {}
        for task, (n, multi) in enumerate(zip(self.hparams.task_classes, self.hparams.multi_label)):
            rows = batch["task"] == task
            if not rows.any():
                continue
            out, target = logits[task][rows], batch["target"][rows, :n]
            if multi:
                loss = F.binary_cross_entropy_with_logits(out, target)
                accuracy = ((out > 0).float() == target).float().mean()
            else:
                loss = F.cross_entropy(out, target.argmax(-1))
                accuracy = (out.argmax(-1) == target.argmax(-1)).float().mean()
            total = total + loss
            stats[f"task{task}_loss"], stats[f"task{task}_accuracy"] = loss, accuracy
        return total, stats

    def training_step(self, batch, batch_idx):
        loss, stats = self._losses(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["wave"]))
        self.log_dict({f"train/{k}": v for k, v in stats.items()}, batch_size=len(batch["wave"]))
        return loss

    def validation_step(self, batch, batch_idx):
        loss, stats = self._losses(batch)
        self.log("val/loss", loss, prog_bar=True, batch_size=len(batch["wave"]), sync_dist=True)
        self.log_dict({f"val/{k}": v for k, v in stats.items()}, prog_bar=True, batch_size=len(batch["wave"]),
                      sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def load_feature_loss_net(name_or_path: str = "feature-loss-net") -> FeatureLossNet:
    """The pretrained loss network from its card (a folder, a bundled card name or a Hub id),
    frozen: ``zoo.hub.load_component`` with the class it must be."""
    from ..hub import load_component

    return load_component(name_or_path, FeatureLossNet)


class DeepFeatureLoss(nn.Module):
    """Eq. 1 with the sec. II-B b) weighting schedule (weights 1, then inverse relative losses)."""

    def __init__(self, net: FeatureLossNet | None, n_layers: int = 6, warmup_epochs: int = 10):
        super().__init__()
        self.n_layers, self.warmup_epochs = n_layers, warmup_epochs
        # A plain attribute, not a submodule: the loss network is frozen and not part of the
        # denoiser's weights (it is loaded from its own card when training starts).
        self.__dict__["net"] = net
        self.register_buffer("weights", torch.ones(n_layers))
        self.register_buffer("weights_fixed", torch.zeros((), dtype=torch.bool))
        self.register_buffer("epoch_sums", torch.zeros(n_layers))
        self.register_buffer("epoch_count", torch.zeros(()))

    def layer_distances(self, enhanced: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        net = self.__dict__["net"]
        with torch.no_grad():
            targets = net.features(clean, self.n_layers)
        outputs = net.features(enhanced, self.n_layers)
        return torch.stack([(o - t).abs().mean() for o, t in zip(outputs, targets)])

    def forward(self, enhanced: torch.Tensor, clean: torch.Tensor, epoch: int, training: bool) -> torch.Tensor:
        distances = self.layer_distances(enhanced, clean)
        if training and not bool(self.weights_fixed) and epoch == self.warmup_epochs - 1:
            self.epoch_sums += distances.detach()
            self.epoch_count += 1
        return (self.weights * distances).sum()

    def end_epoch(self, epoch: int) -> None:
        """After the last warm-up epoch: lambda_m = 1 / (relative loss of layer m).

        Trained on several processes (DDP), each has summed the distances of its own share of the
        epoch; the sums are pooled first, so every process fixes the same weights, those of the
        whole epoch, and a checkpoint from any rank is the run's."""
        if bool(self.weights_fixed) or epoch != self.warmup_epochs - 1:
            return
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            pooled = torch.cat([self.epoch_sums, self.epoch_count.reshape(1)])
            torch.distributed.all_reduce(pooled)  # every rank takes part, even one that saw no batch
            self.epoch_sums.copy_(pooled[:-1])
            self.epoch_count.copy_(pooled[-1])
        if self.epoch_count == 0:
            return
        means = self.epoch_sums / self.epoch_count
        relative = means / means.mean()
        self.weights.copy_(1.0 / relative.clamp_min(1e-8))
        self.weights_fixed.fill_(True)


@register("feature-loss-can", card="hub_cards/feature-loss-can", hub_repo="zoo-denoise/feature-loss-can",
          paper="speech-denoising-deep-feature-losses.txt (Germain, Chen & Koltun 2019), sec. II",
          trained_on="VoiceBank-DEMAND (28 speakers; the authors' training, 320 epochs on a GPU)",
          summary="The authors' released context aggregation network (W=64, 14 dilated layers, 1 s receptive "
                  "field) trained with their deep feature loss; each layer normalised with the input's statistics")
@register("feature-loss-can-generalist", card="hub_cards/feature-loss-can-generalist",
          hub_repo="zoo-denoise/feature-loss-can-generalist",
          paper="speech-denoising-deep-feature-losses.txt (Germain, Chen & Koltun 2019), sec. II; WiSE-FT",
          trained_on="VoiceBank-DEMAND (the authors' training), then a 1000-step fine-tune on LibriSpeech + LJSpeech x "
                     "Speech Commands, NOISEX, 73 min of scene recordings and 98 non-speech sounds at -5..20 dB "
                     "(../shared/data; held-out speakers and noises validate)",
          summary="The authors' released network and its fine-tune on all of ../shared/data's training speech and "
                  "noise, mixed half and half in weight space (WiSE-FT): better on speakers and noises unlike "
                  "VoiceBank-DEMAND's, as good on VoiceBank-DEMAND")
@register("feature-loss-can-cpu", card="hub_cards/feature-loss-can-cpu", hub_repo="zoo-denoise/feature-loss-can-cpu",
          paper="speech-denoising-deep-feature-losses.txt (Germain, Chen & Koltun 2019), sec. II",
          trained_on=SHARED_DATA,
          summary="The same network and loss trained by the zoo on its 2-core CPU (W=32 widened to W=64, 13 h; "
                  "the zoo's own loss network)")
class FeatureLossCAN(CANDenoiserBase):
    """The CAN of sec. II-A trained with the deep feature loss of sec. II-B (Eq. 1)."""

    def __init__(self, width: int = 64, dilations: tuple[int, ...] = PAPER_DILATIONS, kernel_size: int = 3,
                 lr: float = 1e-4, sample_rate: int = 16000, loss_network: str = "feature-loss-net",
                 loss_layers: int = 6, warmup_epochs: int = 10, wave_scale: float = 2.0**15,
                 normalization: str = "batch", norm_eps: float = 1e-5, runtime: str = "auto"):
        super().__init__()
        self.save_hyperparameters()
        # The loss network sees [-1, 1] samples as it was trained on; its batch-normalised
        # features make the gradient reaching the CAN's integer-scaled layers the same as in the
        # authors' code, where both networks saw integer samples.
        self._build(width, dilations, kernel_size, sample_rate, wave_scale, normalization, norm_eps, runtime)
        self.feature_loss = DeepFeatureLoss(None, loss_layers, warmup_epochs)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.feature_loss.__dict__["net"] is None:
            net = load_feature_loss_net(self.hparams.loss_network).to(self.device)
            for parameter in net.parameters():
                parameter.requires_grad_(False)
            self.feature_loss.__dict__["net"] = net

    def on_fit_start(self) -> None:
        net = self.feature_loss.__dict__["net"]
        if net is not None:
            net.to(self.device).eval()  # BN statistics of the loss network stay fixed

    def loss(self, outputs: dict, batch: dict) -> torch.Tensor:
        return self.feature_loss(outputs["enhanced"], batch["clean"], self.current_epoch, self.training)

    def on_train_epoch_end(self) -> None:
        self.feature_loss.end_epoch(self.current_epoch)
        # the same on every rank (pooled in end_epoch): nothing to reduce
        self.log_dict({f"loss_weight/{m + 1}": w for m, w in enumerate(self.feature_loss.weights.tolist())},
                      rank_zero_only=True)
